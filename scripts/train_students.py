"""Rule train_students: train one bundle of runs (same store, seed and epochs) together in one process."""

from secret_moe.logs import log_to
from secret_moe.steps.distill import train_students

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
train_students(
    sm.input.train,
    sm.input.validation,
    sm.output[0],
    runs=sm.params.runs,
    distill=sm.params.distill,
    seed=sm.params.seed,
    device=sm.params.device,
    precision=sm.params.precision,
    checkpoint=sm.params.checkpoint,
    checkpoint_minutes=sm.params.checkpoint_minutes,
    threads=sm.threads,
)
