"""Rule profile_layers: one row per layer of a model, its verdict beside its input statistics (docs/scan.md)."""

from secret_moe.logs import log_to
from secret_moe.steps.scan import profile_layers

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
profile_layers(
    sm.input.verdict,
    sm.input.ladder,
    list(sm.input.stats),
    model=sm.wildcards.model,
    layers=sm.params.layers,
    epochs=sm.params.epochs,
    out=sm.output[0],
)
