"""Rule plot_figure: render one figure (PDF and PNG) for one model and layer."""

from secret_moe.logs import log_to
from secret_moe.steps.figures import plot_figure

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
plot_figure(
    sm.wildcards.figure,
    sm.input.best,
    sm.input.curves,
    sm.input.paper,
    model=sm.wildcards.model,
    layer=int(sm.wildcards.layer),
    hf_id=sm.params.hf_id,
    epochs=sm.params.epochs,
    pdf=sm.output.pdf,
    png=sm.output.png,
)
