"""Rule plot_scan: a model's layer profile, the MoE advantage above the input statistics (docs/scan.md)."""

from secret_moe.logs import log_to
from secret_moe.steps.figures import plot_scan

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
plot_scan(sm.input.profile, model=sm.wildcards.model, pdf=sm.output.pdf, png=sm.output.png)
