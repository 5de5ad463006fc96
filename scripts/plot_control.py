"""Rule plot_control: MoE advantage of a control model (random weights, padded positions) next to its base."""

from secret_moe.logs import log_to
from secret_moe.steps.figures import plot_control

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
plot_control(sm.input.advantage, model=sm.wildcards.model, **sm.params.pair, pdf=sm.output.pdf, png=sm.output.png)
