"""Rule plot_layer_sweep: MoE advantage vs layer for one model."""

from secret_moe.logs import log_to
from secret_moe.steps.figures import plot_layer_sweep

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
plot_layer_sweep(sm.input.advantage, model=sm.wildcards.model, pdf=sm.output.pdf, png=sm.output.png)
