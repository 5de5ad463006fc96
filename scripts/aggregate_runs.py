"""Rule aggregate_runs: the results tables, from every run's metrics (docs/artifacts.md; captions in report/)."""

from secret_moe.logs import log_to
from secret_moe.steps.aggregate import aggregate_runs

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
aggregate_runs(
    list(sm.input),
    sm.params.families,
    epochs=sm.params.epochs,
    budget_check=sm.params.budget_check,
    ladder=sm.params.ladder,
    confidence=sm.params.confidence,
    out=dict(sm.output.items()),
)
