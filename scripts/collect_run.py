"""Rule collect_run: copy one run's metrics and weights out of the bundle that trained it."""

from secret_moe.logs import log_to
from secret_moe.steps.collect import collect_run

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
collect_run(sm.input.bundle, sm.params.run, sm.output.metrics, sm.output.weights)
