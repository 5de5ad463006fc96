"""Distillation: fit a student to the teacher's outputs by MSE with Adam and cosine decay."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from secret_moe.batches import ActivationBatches
from secret_moe.errors import ConfigError, NonFiniteLossError
from secret_moe.fvu_by_kind import batch_kinds, kind_report
from secret_moe.rows import ROW_KINDS, KindSplit
from secret_moe.students.optim import make_optimizer

log = logging.getLogger(__name__)

# `distill.precision`: the dtype of the training step's autocast, None for plain float32.  The authors trained
# with float16 autocast on GPU; bfloat16 needs no gradient scaler (float32's exponent range).  Parameters,
# Adam's state and every evaluation stay float32 in all three.
PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
FULL_PRECISION = "float32"


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


@dataclass
class MixedPrecision:
    """One student's autocast dtype (None: float32) and, for float16, its own gradient scaler (a scaler's
    scale follows its student's gradients, so students trained together do not share one)."""

    dtype: torch.dtype | None
    scaler: torch.amp.GradScaler | None

    @classmethod
    def of(cls, precision: str, device: str | torch.device) -> MixedPrecision:
        dtype = PRECISIONS[precision]
        device_type = torch.device(device).type
        return cls(dtype, torch.amp.GradScaler(device_type) if dtype is torch.float16 else None)


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
) -> dict[str, Any]:
    """Train for `config.epochs`; returns the per-epoch history and throughput."""
    return fit_together([student], train, val, [config], variance, split)[0]


def fit_together(
    students: list[nn.Module],
    train: ActivationBatches,
    val: ActivationBatches,
    configs: list[TrainConfig],
    variance: float,
    split: KindSplit | None = None,
) -> list[dict[str, Any]]:
    """Train several students on the same batches, one step of each per batch.

    Each student has its own optimiser and schedule and sees exactly the batches and updates it would see
    trained alone, so its result does not depend on its companions; what they share is the process, the
    store read, the gather of each batch and the validation batches.  Returns one result per student: the
    per-epoch history, and the seconds spent in its own steps and evaluations.  With `split` (the validation
    rows by kind) each epoch's evaluation also gives the FVU of every kind (`val_fvu_<kind>` in the history)
    and the full per-kind report (`by_kind`, one per epoch; `fvu_by_kind.kind_report`).
    """
    epochs = {config.epochs for config in configs}
    if len(epochs) != 1:
        raise ValueError(f"students trained together need the same epochs, got {sorted(epochs)}")
    (total_epochs,) = epochs
    optimizers = [make_optimizer(s, c.learning_rate) for s, c in zip(students, configs, strict=True)]
    amps = [MixedPrecision.of(config.precision, train.device) for config in configs]
    schedulers = [
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_epochs * len(train)) for opt in optimizers
    ]
    histories: list[list[dict[str, Any]]] = [[] for _ in students]
    reports: list[list[dict[str, Any]]] = [[] for _ in students]
    seconds = [0.0] * len(students)
    rows_seen = 0
    for student in students:
        student.train()
    label = configs[0].run_name if len(configs) == 1 else f"{len(configs)} students"
    for epoch in range(total_epochs):
        loss_sums, rows = [0.0] * len(students), 0
        progress = tqdm(
            train.epoch(epoch), total=len(train), desc=f"{label} epoch {epoch + 1}", mininterval=5, leave=False
        )
        for step, (x_BD, y_BD) in enumerate(progress):
            for i, (student, optimizer, config) in enumerate(zip(students, optimizers, configs, strict=True)):
                tick = time.perf_counter()
                loss = _train_step(student, optimizer, x_BD, y_BD, amps[i]).item()
                if not math.isfinite(loss):
                    raise NonFiniteLossError(
                        f"run {config.run_name}: training loss became {loss} at epoch {epoch + 1}, step {step + 1}"
                    )
                schedulers[i].step()
                seconds[i] += time.perf_counter() - tick
                loss_sums[i] += loss * len(x_BD)
            rows += len(x_BD)
        rows_seen += rows
        tick = time.perf_counter()
        errors_SK = squared_errors(students, val, split.kinds_N if split else None)
        eval_share = (time.perf_counter() - tick) / len(students)
        for i, (errors_K, config) in enumerate(zip(errors_SK, configs, strict=True)):
            seconds[i] += eval_share
            val_mse = float(errors_K.sum()) / (val.rows * val.d_model)
            if not math.isfinite(val_mse):
                raise NonFiniteLossError(f"run {config.run_name}: validation loss is {val_mse} after epoch {epoch + 1}")
            record = {
                "epoch": epoch + 1,
                "train_mse": loss_sums[i] / rows,
                "val_mse": val_mse,
                "val_fvu": val_mse / variance,
            }
            if split is not None:
                reports[i].append(kind_report(errors_K, split))
                record.update({f"val_fvu_{kind}": part["fvu"] for kind, part in reports[i][-1].items()})
            histories[i].append(record)
            log.info(
                "%s epoch %d: train MSE %.4g, val FVU %.4f",
                config.run_name,
                epoch + 1,
                record["train_mse"],
                record["val_fvu"],
            )
    return [
        {"history": history, "by_kind": report, "seconds": secs, "samples_per_second": rows_seen / secs}
        for history, report, secs in zip(histories, reports, seconds, strict=True)
    ]
