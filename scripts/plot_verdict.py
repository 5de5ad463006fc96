"""Rule plot_verdict: the MoE advantage per model, layer and MoE size, with intervals and verdict words."""

from secret_moe.logs import log_to
from secret_moe.steps.figures import plot_verdict

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
plot_verdict(sm.input.verdict, sm.input.by_seed, pdf=sm.output.pdf, png=sm.output.png)
