"""Rule sample_gaussian: a Gaussian control store with the real store's row count; y = teacher(x)."""

from secret_moe.logs import log_to
from secret_moe.steps.gaussian import sample_gaussian

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
sample_gaussian(
    sm.input.moments,
    sm.input.teacher,
    sm.input.like,
    sm.output[0],
    seed=sm.params.seed,
    split=sm.wildcards.split,
    device=sm.params.device,
)
