"""Rule plot_ladder: every main-comparison student's FVU at every rung of the budget ladder, for one layer."""

from secret_moe.logs import log_to
from secret_moe.steps.figures import plot_ladder

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
plot_ladder(
    sm.input.runs,
    model=sm.wildcards.model,
    layer=int(sm.wildcards.layer),
    tolerance=sm.params.tolerance,
    pdf=sm.output.pdf,
    png=sm.output.png,
)
