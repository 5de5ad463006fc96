"""Rule aggregate_runs: one tidy table of all runs, the best over learning rates, and the MoE advantage."""

from secret_moe.logs import log_to
from secret_moe.steps import aggregate_runs

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
aggregate_runs(
    list(sm.input),
    sm.params.families,
    runs=sm.output.runs,
    best=sm.output.best,
    curves=sm.output.curves,
    advantage=sm.output.advantage,
)
