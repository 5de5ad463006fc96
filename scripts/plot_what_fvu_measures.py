"""Rule plot_what_fvu_measures: a padding control's FVU over all rows, on token rows, and on its base's tokens."""

from secret_moe.logs import log_to
from secret_moe.steps.figures import plot_what_fvu_measures

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
plot_what_fvu_measures(
    sm.input.by_kind,
    model=sm.wildcards.model,
    layer=int(sm.wildcards.layer),
    base=sm.params.base,
    epochs=sm.params.epochs,
    pdf=sm.output.pdf,
    png=sm.output.png,
)
