"""Distillation: fit a student to the teacher's outputs by MSE with Adam, under a learning-rate schedule
(`schedule.py`: the paper's cosine decay, or warmup-stable-decay with a budget ladder from one run)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from secret_moe.batches import ActivationBatches
from secret_moe.checkpoint import Checkpoint
from secret_moe.errors import ConfigError, NonFiniteLossError
from secret_moe.fvu_by_kind import batch_kinds, kind_report
from secret_moe.precision import FULL_PRECISION, PRECISIONS, MixedPrecision
from secret_moe.rows import ROW_KINDS, KindSplit
from secret_moe.schedule import Schedule
from secret_moe.students.data_init import REFITS, refit_output
from secret_moe.students.moe import MoEStudent
from secret_moe.students.optim import RateScales, make_optimizer, scaled_rate
from secret_moe.students.revive import revival_ends, revive_dead

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int
    learning_rate: float
    run_name: str
    precision: str = FULL_PRECISION
    optimizer: str = "adam"  # students.optim.OPTIMIZERS
    lr_scale: RateScales = field(default_factory=RateScales)
    revive: str = "none"  # students.revive.REVIVALS: re-draw the MoE's dead experts (needs a RowSample)
    refit: str = "none"  # students.data_init.REFITS: refit the output layer by least squares (needs a RowSample)

    def __post_init__(self) -> None:
        if self.refit not in REFITS:
            raise ConfigError(f"distill.refit: {self.refit!r} is not one of {', '.join(REFITS)}")
        if self.epochs < 1 or not self.learning_rate > 0:
            raise ValueError(f"run {self.run_name}: epochs and learning rate must be positive")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"distill.precision: {self.precision!r} is not one of {', '.join(PRECISIONS)}")


@dataclass(frozen=True)
class RowSample:
    """What reviving dead experts (`students.revive`) and refitting output layers (`students.data_init.refit_output`)
    need: a sample of training rows, the run's seed (each epoch's revival draw is seeded by it and the epoch) and, per
    revival mode, the last epoch after which it revives (`fit_together` sets it from the schedule)."""

    x_ND: torch.Tensor
    y_ND: torch.Tensor
    seed: int
    until: dict[str, int] = field(default_factory=dict)

    def placed(self, device: str, until: dict[str, int]) -> RowSample:
        """This sample on `device` (moved once, not per student and epoch), reviving `until` those epochs."""
        return replace(self, x_ND=self.x_ND.to(device), y_ND=self.y_ND.to(device), until=until)


# One epoch of one student: its history record and its per-kind report (None without kinds)
Entry = tuple[dict[str, Any], dict[str, Any] | None]


@dataclass
class Line:
    """Students trained along one path of the schedule (the trunk, or a cooldown branch off it) with what their
    steps change besides the weights: Adam optimisers, float16 gradient scalers, cosine schedulers (none under
    wsd); per student its history, and the epochs done (global: epoch numbers pick the batches)."""

    students: list[nn.Module]
    optimizers: list[torch.optim.Optimizer]
    amps: list[MixedPrecision]
    schedulers: list[torch.optim.lr_scheduler.LRScheduler]
    history: list[list[Entry]]
    done: int = 0

    def branch(self) -> Line:
        """A copy to train on while this line waits, its history empty (students, optimisers, scalers and schedulers
        copied together, so each copied optimiser steps its copied student)."""
        students, optimizers, amps, schedulers = deepcopy((self.students, self.optimizers, self.amps, self.schedulers))
        return Line(students, optimizers, amps, schedulers, [[] for _ in students], self.done)


@dataclass
class Progress:
    """Where a `fit_together` run stands at the end of an epoch, all that a checkpoint holds besides the random
    number generators: the trunk, the cooldown branch in progress (if any), the finished rungs (per rung, per
    student, its history) and what was spent so far: epochs (the trunk's and every branch's), seconds per student
    and rows."""

    trunk: Line
    branch: Line | None = None
    rungs: list[list[list[Entry]]] = field(default_factory=list)
    epochs_trained: int = 0
    seconds: list[float] = field(default_factory=list)
    rows_seen: int = 0


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
    checkpoint: Checkpoint | None = None,
    sample: RowSample | None = None,
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
    histories)`, if given, receives each rung's per-student histories as soon as the rung is done in this
    process (the progress of a long ladder, before the whole run ends).

    An MoE student's history also records `dead_experts`, the share of its experts no training row was routed to in
    the epoch; with a row `sample`, those of students whose config asks to `revive` are re-drawn after each trunk epoch
    up to the first budget's cooldown (`first_rung`) or the last one's (`trunk`) (`students.revive`), and students whose
    config asks to `refit` get their output layer refit by least squares on it after every epoch, before it is
    evaluated (`students.data_init.refit_output`).

    With `checkpoint`, the run continues from the checkpoint's saved state if it holds one of these settings,
    and saves its state at the end of epochs (`checkpoint.Checkpoint`); the results are the same bytes as
    without interruption.  The caller removes the checkpoint once the results are safe.
    """
    total_epochs = _common_epochs(configs, sample)
    schedule = schedule or Schedule()
    budgets = schedule.budgets(total_epochs)
    progress = starting_progress(students, configs, train, schedule, total_epochs)
    if checkpoint is not None:
        checkpoint.resume(progress)
    before = progress.epochs_trained
    sample = sample.placed(train.device, revival_ends(schedule, budgets)) if sample is not None else None
    run = _Run(train, val, configs, variance, split, progress, checkpoint, sample)
    label = configs[0].run_name if len(configs) == 1 else f"{len(configs)} students"
    for budget in budgets[len(progress.rungs) :]:
        _train_rung(run, schedule, budget, budget == budgets[-1], label)
        if on_rung is not None:
            on_rung(budget, [_history(h, False)["history"] for h in progress.rungs[-1]])
    log.info(
        "%s: %d epochs trained in this process, %d in all",
        label,
        progress.epochs_trained - before,
        progress.epochs_trained,
    )
    return _results(progress, budgets, split is not None)


def _common_epochs(configs: list[TrainConfig], sample: RowSample | None) -> int:
    """The epochs every student of a `fit_together` shares; refused if they differ, or if a student revives or refits
    without the row sample it needs."""
    epochs = {config.epochs for config in configs}
    if len(epochs) != 1:
        raise ValueError(f"students trained together need the same epochs, got {sorted(epochs)}")
    if sample is None and any(config.revive != "none" or config.refit != "none" for config in configs):
        raise ValueError("students that revive or refit need the row `sample` they are drawn and fit from")
    return epochs.pop()


def _results(progress: Progress, budgets: list[int], by_kind: bool) -> list[dict[str, Any]]:
    """Each student's result: its history (the longest budget's), per-kind reports, time and throughput, and with
    several budgets every rung's history."""
    results = []
    for i, seconds in enumerate(progress.seconds):
        result = {
            **_history(progress.rungs[-1][i], by_kind),
            "seconds": seconds,
            "samples_per_second": progress.rows_seen / seconds,
        }
        if len(budgets) > 1:
            result["rungs"] = [
                {"epochs": budget, **_history(histories[i], by_kind)}
                for budget, histories in zip(budgets, progress.rungs, strict=True)
            ]
        results.append(result)
    return results


def starting_progress(
    students: list[nn.Module], configs: list[TrainConfig], train: ActivationBatches, schedule: Schedule, epochs: int
) -> Progress:
    """A run's progress at its start: the students on the trunk, each with its Adam optimiser, gradient scaler and
    (cosine) scheduler; nothing trained."""
    optimizers = [
        make_optimizer(s, c.learning_rate, c.optimizer, c.lr_scale) for s, c in zip(students, configs, strict=True)
    ]
    amps = [MixedPrecision.of(config.precision, train.device) for config in configs]
    schedulers = (
        [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * len(train)) for opt in optimizers]
        if schedule.kind == "cosine"
        else []
    )
    trunk = Line(students, optimizers, amps, schedulers, [[] for _ in students])
    return Progress(trunk, seconds=[0.0] * len(students))


def _train_rung(run: _Run, schedule: Schedule, budget: int, last: bool, label: str) -> None:
    """One rung of the ladder (under cosine: the whole run): the trunk up to the budget's cooldown start, then its
    cooldown on a branch, a copy of the trunk, so the trunk goes on untouched; the longest budget cools down the
    trunk itself.  The rung's per-student histories join `run.progress.rungs`."""
    progress = run.progress
    rate = None
    if schedule.kind == "wsd":
        rate = partial(_wsd_rate, [c.learning_rate for c in run.configs], schedule, len(run.train), budget)
    if last:
        run.epochs(progress.trunk, budget, label, rate, trunk=True)
        progress.rungs.append(progress.trunk.history)
        return
    if progress.branch is None:  # else a resumed run's branch in progress
        run.epochs(progress.trunk, schedule.cooldown_start(budget), label, rate, trunk=True)
        progress.branch = progress.trunk.branch()
    run.epochs(progress.branch, budget, f"{label} e{budget}", rate)
    progress.rungs.append([t + b for t, b in zip(progress.trunk.history, progress.branch.history, strict=True)])
    progress.branch = None


def _history(entries: list[Entry], by_kind: bool) -> dict[str, list]:
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
    """What the epochs of one `fit_together` share: the data, the per-student configs, the progress so far and the
    checkpoint it is saved to."""

    train: ActivationBatches
    val: ActivationBatches
    configs: list[TrainConfig]
    variance: float
    split: KindSplit | None
    progress: Progress
    checkpoint: Checkpoint | None = None
    sample: RowSample | None = None

    def epochs(
        self,
        line: Line,
        stop: int,
        label: str,
        before_step: Callable[[int, int], float] | None = None,
        trunk: bool = False,
    ) -> None:
        """Train `line` from its epochs done up to `stop` (global epoch numbers: they pick the batches), evaluating
        after each and appending to its history; `before_step(i, step)` gives student i's rate at global step
        `step`, else the line's (cosine) schedulers step after each step.  On the `trunk`, dead experts are revived
        where the run asks for it (`_routed`).  Offers the checkpoint the progress after every epoch."""
        steps = len(self.train)
        for student in line.students:
            student.train()
        for epoch in range(line.done, stop):
            loss_sums, rows = [0.0] * len(line.students), 0
            progress = tqdm(
                self.train.epoch(epoch), total=steps, desc=f"{label} epoch {epoch + 1}", mininterval=5, leave=False
            )
            for step, (x_BD, y_BD) in enumerate(progress):
                for i in range(len(line.students)):
                    rate = before_step(i, epoch * steps + step) if before_step is not None else None
                    loss_sums[i] += self._step(line, i, x_BD, y_BD, rate, (epoch, step)) * len(x_BD)
                rows += len(x_BD)
            self.progress.rows_seen += rows
            dead = self._routed(line, epoch, trunk)
            self._refit(line)
            for i, entry in enumerate(self._evaluate(line.students, epoch, [s / rows for s in loss_sums])):
                if dead[i] is not None:
                    entry[0]["dead_experts"] = dead[i]
                line.history[i].append(entry)
            line.done = epoch + 1
            self.progress.epochs_trained += 1
            if self.checkpoint is not None:
                self.checkpoint.offer(self.progress)

    def _routed(self, line: Line, epoch: int, trunk: bool) -> list[float | None]:
        """Each MoE student's share of experts without training rows this epoch (None for a dense MLP); on the trunk
        before the cooldown its mode names, those of students configured to revive are re-drawn (`students.revive`)."""
        shares: list[float | None] = []
        for i, student in enumerate(line.students):
            if not isinstance(student, MoEStudent):
                shares.append(None)
                continue
            routed = student.take_routed()
            shares.append(float((routed == 0).float().mean()))
            sample, mode = self.sample, self.configs[i].revive
            if mode != "none" and trunk and epoch + 1 <= sample.until[mode]:  # a sample: `_common_epochs`
                revive_dead(
                    student, line.optimizers[i], routed, (sample.x_ND, sample.y_ND), sample.seed * 100_003 + epoch
                )
        return shares

    def _refit(self, line: Line) -> None:
        """The output layer of each student configured to `refit`, by least squares on the row sample."""
        for student, config in zip(line.students, self.configs, strict=True):
            if config.refit != "none":  # a sample: `_common_epochs`
                refit_output(student, self.sample.x_ND, self.sample.y_ND)

    def _step(
        self, line: Line, i: int, x_BD: torch.Tensor, y_BD: torch.Tensor, rate: float | None, at: tuple[int, int]
    ) -> float:
        """Student i's training step at `rate` (None: its scheduler's); its loss.  `at`: (epoch, step), 0-based."""
        tick = time.perf_counter()
        optimizer = line.optimizers[i]
        if rate is not None:
            scaled_rate(optimizer, rate)
        loss = _train_step(line.students[i], optimizer, x_BD, y_BD, line.amps[i]).item()
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"run {self.configs[i].run_name}: training loss became {loss} at epoch {at[0] + 1}, step {at[1] + 1}"
            )
        if line.schedulers:
            line.schedulers[i].step()
        self.progress.seconds[i] += time.perf_counter() - tick
        return loss

    def _evaluate(self, students: list[nn.Module], epoch: int, train_mse: list[float]) -> list[Entry]:
        tick = time.perf_counter()
        errors_SK = squared_errors(students, self.val, self.split.kinds_N if self.split else None)
        eval_share = (time.perf_counter() - tick) / len(students)
        entries = []
        for i, (errors_K, config) in enumerate(zip(errors_SK, self.configs, strict=True)):
            self.progress.seconds[i] += eval_share
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
