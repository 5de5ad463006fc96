"""Distillation: fit a student to the teacher's outputs by MSE with Adam, under a learning-rate schedule
(`schedule.py`: the paper's cosine decay, or warmup-stable-decay with a budget ladder from one run)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from secret_moe.batches import ActivationBatches
from secret_moe.errors import ConfigError, NonFiniteLossError
from secret_moe.fvu_by_kind import batch_kinds, kind_report
from secret_moe.precision import FULL_PRECISION, PRECISIONS, MixedPrecision
from secret_moe.rows import ROW_KINDS, KindSplit
from secret_moe.schedule import Schedule
from secret_moe.students.optim import make_optimizer

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int
    learning_rate: float
    run_name: str
    precision: str = FULL_PRECISION

    def __post_init__(self) -> None:
        if self.epochs < 1 or not self.learning_rate > 0:
            raise ValueError(f"run {self.run_name}: epochs and learning rate must be positive")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"distill.precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")


def _train_step(
    student: nn.Module,
    optimizer: torch.optim.Optimizer,
    x_BD: torch.Tensor,
    y_BD: torch.Tensor,
    amp: MixedPrecision | None = None,
) -> torch.Tensor:
    """One Adam step on the batch's MSE; with `amp`, the forward under autocast (the loss in float32) and,
    for float16, the backward on the scaled loss, a step skipped when the gradients overflow."""
    optimizer.zero_grad(set_to_none=True)
    dtype = amp.dtype if amp else None
    with torch.autocast(x_BD.device.type, dtype=dtype, enabled=dtype is not None):
        loss = nn.functional.mse_loss(student(x_BD).float(), y_BD)
    if amp and amp.scaler:
        amp.scaler.scale(loss).backward()
        amp.scaler.step(optimizer)
        amp.scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss.detach()


@torch.no_grad()
def squared_errors(students: list[nn.Module], batches: ActivationBatches, kinds_N: np.ndarray | None) -> np.ndarray:
    """(S, K): each student's summed squared error over the rows of each kind (`rows.ROW_KINDS`), in one pass
    over the batches; without kinds (`kinds_N` None) a single column over all rows."""
    for student in students:
        student.eval()
    columns = len(ROW_KINDS) if kinds_N is not None else 1
    squared_SK = torch.zeros(len(students), columns, dtype=torch.float64, device=batches.device)
    kinds = batch_kinds(batches, kinds_N) if kinds_N is not None else None
    for x_BD, y_BD in batches.epoch():
        kind_B = next(kinds) if kinds is not None else torch.zeros(len(x_BD), dtype=torch.long, device=x_BD.device)
        for i, student in enumerate(students):
            error_B = (student(x_BD) - y_BD).double().pow(2).sum(dim=1)
            squared_SK[i].index_add_(0, kind_B, error_B)
    for student in students:
        student.train()
    return squared_SK.cpu().numpy()


def evaluate_many(students: list[nn.Module], batches: ActivationBatches) -> list[float]:
    """Validation MSE of each student, averaged over all rows and dimensions (one pass over the batches)."""
    totals = squared_errors(students, batches, None).sum(axis=1)
    return [float(total) / (batches.rows * batches.d_model) for total in totals]


def evaluate(student: nn.Module, batches: ActivationBatches) -> float:
    """Validation MSE averaged over all rows and dimensions."""
    return evaluate_many([student], batches)[0]


def fit(
    student: nn.Module,
    train: ActivationBatches,
    val: ActivationBatches,
    config: TrainConfig,
    variance: float,
    split: KindSplit | None = None,
    schedule: Schedule | None = None,
) -> dict[str, Any]:
    """Train for `config.epochs`; returns the per-epoch history and throughput."""
    return fit_together([student], train, val, [config], variance, split, schedule)[0]


def fit_together(
    students: list[nn.Module],
    train: ActivationBatches,
    val: ActivationBatches,
    configs: list[TrainConfig],
    variance: float,
    split: KindSplit | None = None,
    schedule: Schedule | None = None,
    on_rung: Callable[[int, list[list[dict[str, Any]]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train several students on the same batches, one step of each per batch.

    Each student has its own optimiser and schedule and sees exactly the batches and updates it would see
    trained alone, so its result does not depend on its companions; what they share is the process, the
    store read, the gather of each batch and the validation batches.  Returns one result per student: the
    per-epoch history, and the seconds spent in its own steps and evaluations.  With `split` (the validation
    rows by kind) each epoch's evaluation also gives the FVU of every kind (`val_fvu_<kind>` in the history)
    and the full per-kind report (`by_kind`, one per epoch; `fvu_by_kind.kind_report`).

    Under a `wsd` schedule with several rungs (`schedule.Schedule.budgets`), every shorter budget is a
    cooldown branch off the trunk, trained on a copy of the students and their optimisers, so the trunk goes on
    untouched; each result then also has `rungs`, one history per budget (shortest first), each equal to the
    history of a run trained for that budget alone.  `history` is the longest budget's.  `on_rung(budget,
    histories)`, if given, receives each rung's per-student histories as soon as the rung is done (the progress of
    a long ladder, before the whole run ends).
    """
    epochs = {config.epochs for config in configs}
    if len(epochs) != 1:
        raise ValueError(f"students trained together need the same epochs, got {sorted(epochs)}")
    (total_epochs,) = epochs
    schedule = schedule or Schedule()
    budgets = schedule.budgets(total_epochs)
    optimizers = [make_optimizer(s, c.learning_rate) for s, c in zip(students, configs, strict=True)]
    amps = [MixedPrecision.of(config.precision, train.device) for config in configs]
    run = _Run(train, val, configs, variance, split, seconds=[0.0] * len(students))
    label = configs[0].run_name if len(configs) == 1 else f"{len(configs)} students"
    if schedule.kind == "cosine":
        schedulers = [
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_epochs * len(train)) for opt in optimizers
        ]
        history = run.epochs(
            students, optimizers, amps, range(total_epochs), label, after_step=lambda i: schedulers[i].step()
        )
        rung_histories = [history]
    else:
        rung_histories = []
        trunk: list[list[tuple[dict[str, Any], dict[str, Any] | None]]] = [[] for _ in students]
        done = 0
        for budget in budgets:
            start = schedule.cooldown_start(budget)
            rate = partial(_wsd_rate, [c.learning_rate for c in configs], schedule, len(train), budget)
            part = run.epochs(students, optimizers, amps, range(done, start), label, before_step=rate)
            trunk, done = [t + p for t, p in zip(trunk, part, strict=True)], start
            # a shorter budget cools down a copy; the longest one cools down the trunk itself
            last = budget == budgets[-1]
            branch = (students, optimizers, amps) if last else deepcopy((students, optimizers, amps))
            branch = run.epochs(*branch, range(start, budget), f"{label} e{budget}", before_step=rate)
            rung_histories.append([t + b for t, b in zip(trunk, branch, strict=True)])
            if on_rung is not None:
                on_rung(budget, [_history(h, False)["history"] for h in rung_histories[-1]])
    results = []
    for i in range(len(students)):
        result = {
            **_history(rung_histories[-1][i], split is not None),
            "seconds": run.seconds[i],
            "samples_per_second": run.rows_seen / run.seconds[i],
        }
        if len(budgets) > 1:
            result["rungs"] = [
                {"epochs": budget, **_history(histories[i], split is not None)}
                for budget, histories in zip(budgets, rung_histories, strict=True)
            ]
        results.append(result)
    return results


def _history(entries: list[tuple[dict[str, Any], dict[str, Any] | None]], by_kind: bool) -> dict[str, list]:
    """One student's (record, per-kind report) per epoch, as its `history` and `by_kind` lists."""
    return {
        "history": [record for record, _ in entries],
        "by_kind": [report for _, report in entries] if by_kind else [],
    }


def _wsd_rate(
    base_rates: list[float], schedule: Schedule, steps_per_epoch: int, budget: int, i: int, step: int
) -> float:
    """Student i's rate at global step `step` of a `wsd` run of `budget` epochs."""
    return base_rates[i] * schedule.factor(step, steps_per_epoch, budget)


@dataclass
class _Run:
    """What the epochs of one `fit_together` share: the data, the per-student configs and the time spent."""

    train: ActivationBatches
    val: ActivationBatches
    configs: list[TrainConfig]
    variance: float
    split: KindSplit | None
    seconds: list[float]
    rows_seen: int = 0

    def epochs(
        self,
        students: list[nn.Module],
        optimizers: list[torch.optim.Optimizer],
        amps: list[MixedPrecision],
        epochs: range,
        label: str,
        before_step: Callable[[int, int], float] | None = None,
        after_step: Callable[[int], None] | None = None,
    ) -> list[list[tuple[dict[str, Any], dict[str, Any] | None]]]:
        """Train `students` for `epochs` (global epoch numbers: they pick the batches), evaluating after each;
        `before_step(i, step)` gives student i's rate at global step `step`, `after_step(i)` runs after its
        step.  Returns per student one (history record, per-kind report) per epoch."""
        out: list[list[tuple[dict[str, Any], dict[str, Any] | None]]] = [[] for _ in students]
        steps = len(self.train)
        for student in students:
            student.train()
        for epoch in epochs:
            loss_sums, rows = [0.0] * len(students), 0
            progress = tqdm(
                self.train.epoch(epoch), total=steps, desc=f"{label} epoch {epoch + 1}", mininterval=5, leave=False
            )
            for step, (x_BD, y_BD) in enumerate(progress):
                for i, (student, optimizer) in enumerate(zip(students, optimizers, strict=True)):
                    tick = time.perf_counter()
                    if before_step is not None:
                        rate = before_step(i, epoch * steps + step)
                        for group in optimizer.param_groups:
                            group["lr"] = rate
                    loss = _train_step(student, optimizer, x_BD, y_BD, amps[i]).item()
                    if not math.isfinite(loss):
                        raise NonFiniteLossError(
                            f"run {self.configs[i].run_name}: training loss became {loss} at epoch {epoch + 1}, "
                            f"step {step + 1}"
                        )
                    if after_step is not None:
                        after_step(i)
                    self.seconds[i] += time.perf_counter() - tick
                    loss_sums[i] += loss * len(x_BD)
                rows += len(x_BD)
            self.rows_seen += rows
            for i, entry in enumerate(self._evaluate(students, epoch, [s / rows for s in loss_sums])):
                out[i].append(entry)
        return out

    def _evaluate(
        self, students: list[nn.Module], epoch: int, train_mse: list[float]
    ) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        tick = time.perf_counter()
        errors_SK = squared_errors(students, self.val, self.split.kinds_N if self.split else None)
        eval_share = (time.perf_counter() - tick) / len(students)
        entries = []
        for i, (errors_K, config) in enumerate(zip(errors_SK, self.configs, strict=True)):
            self.seconds[i] += eval_share
            val_mse = float(errors_K.sum()) / (self.val.rows * self.val.d_model)
            if not math.isfinite(val_mse):
                raise NonFiniteLossError(f"run {config.run_name}: validation loss is {val_mse} after epoch {epoch + 1}")
            record = {
                "epoch": epoch + 1,
                "train_mse": train_mse[i],
                "val_mse": val_mse,
                "val_fvu": val_mse / self.variance,
            }
            report = None
            if self.split is not None:
                report = kind_report(errors_K, self.split)
                record.update({f"val_fvu_{kind}": part["fvu"] for kind, part in report.items()})
            entries.append((record, report))
            log.info(
                "%s epoch %d: train MSE %.4g, val FVU %.4f", config.run_name, epoch + 1, train_mse[i], record["val_fvu"]
            )
        return entries
