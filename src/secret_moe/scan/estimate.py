"""How long a scan's distillation takes on this machine, estimated before it starts: a few training steps and one
evaluation batch of each student are timed on random data of the model's hidden size, then scaled by each run's
batches (train and validation rows over the batch size, times the epochs it trains: under a budget ladder its trunk
and every cooldown branch, `Schedule.footprint`) and divided among the parallel jobs.

Only the students' training and evaluation are counted: capture, the Gaussian samples and each job's start-up are
not, so expect the wall time to be longer."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from secret_moe.schedule import Schedule
from secret_moe.students import build_student, parse_student
from secret_moe.students.optim import make_optimizer
from secret_moe.train import _train_step


@dataclass(frozen=True)
class StepTimes:
    """Seconds of one training step (forward, backward, Adam) and of one evaluation forward, per batch."""

    train: float
    evaluate: float


def time_students(
    students: list[str], d_model: int, batch_size: int, steps: int, learning_rate: float, threads: int
) -> dict[str, StepTimes]:
    """Each student's StepTimes at `batch_size` rows of width `d_model`, on `threads` torch threads (as a job of
    distill.threads runs): the mean of `steps` steps after one warm-up step (which compiles the fused kernels)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    x_BD, y_BD = torch.randn(batch_size, d_model), torch.randn(batch_size, d_model)
    times = {}
    try:
        for name in students:
            student = build_student(parse_student(name), d_model)
            optimizer = make_optimizer(student, learning_rate)
            _train_step(student, optimizer, x_BD, y_BD)
            start = time.perf_counter()
            for _ in range(steps):
                _train_step(student, optimizer, x_BD, y_BD)
            train = (time.perf_counter() - start) / steps
            with torch.no_grad():
                start = time.perf_counter()
                student(x_BD)
                evaluate = time.perf_counter() - start
            times[name] = StepTimes(train, evaluate)
    finally:
        torch.set_num_threads(before)
    return times


def estimate_seconds(
    runs: list[dict[str, Any]],
    times: dict[str, StepTimes],
    rows: dict[str, int],
    batch_size: int,
    schedule: Schedule,
    parallel_jobs: int,
) -> float:
    """Wall seconds of `runs` (plan.distill_runs) at `times` per batch: per run, each epoch it trains under
    `schedule` of ceil(train rows / batch) training steps and ceil(validation rows / batch) evaluation batches,
    summed over runs and shared among `parallel_jobs`."""
    train_batches = math.ceil(rows["train"] / batch_size)
    validation_batches = math.ceil(rows["validation"] / batch_size)
    per_epoch = {name: train_batches * t.train + validation_batches * t.evaluate for name, t in times.items()}
    total = sum(schedule.footprint(run["epochs"]) * per_epoch[run["student"]] for run in runs)
    return total / max(1, parallel_jobs)
