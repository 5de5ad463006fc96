"""Rule train_student: distil the teacher into one student at one learning rate and seed."""

from secret_moe.logs import log_to
from secret_moe.steps import train_student

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
run = {
    "model": sm.wildcards.model,
    "layer": int(sm.wildcards.layer),
    "data": sm.wildcards.data,
    "student": sm.wildcards.student,
    "lr": float(sm.wildcards.lr),
    "seed": int(sm.wildcards.seed),
}
train_student(
    sm.input.train,
    sm.input.validation,
    sm.output.metrics,
    sm.output.weights,
    run=run,
    distill=sm.params.distill,
    seed=sm.params.seed,
    device=sm.params.device,
    threads=sm.threads,
)
