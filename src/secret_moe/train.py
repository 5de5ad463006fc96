"""Distillation: fit a student to the teacher's outputs by MSE with Adam and cosine decay."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from secret_moe.batches import ActivationBatches
from secret_moe.errors import NonFiniteLossError
from secret_moe.students.optim import make_optimizer

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int
    learning_rate: float
    run_name: str

    def __post_init__(self) -> None:
        if self.epochs < 1 or not self.learning_rate > 0:
            raise ValueError(f"run {self.run_name}: epochs and learning rate must be positive")


def _train_step(
    student: nn.Module, optimizer: torch.optim.Optimizer, x_BD: torch.Tensor, y_BD: torch.Tensor
) -> torch.Tensor:
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.mse_loss(student(x_BD), y_BD)
    loss.backward()
    optimizer.step()
    return loss.detach()


@torch.no_grad()
def evaluate_many(students: list[nn.Module], batches: ActivationBatches) -> list[float]:
    """Validation MSE of each student, averaged over all rows and dimensions (one pass over the batches)."""
    for student in students:
        student.eval()
    squared = [0.0] * len(students)
    for x_BD, y_BD in batches.epoch():
        for i, student in enumerate(students):
            squared[i] += (student(x_BD) - y_BD).double().pow(2).sum().item()
    for student in students:
        student.train()
    return [total / (batches.rows * batches.d_model) for total in squared]


def evaluate(student: nn.Module, batches: ActivationBatches) -> float:
    """Validation MSE averaged over all rows and dimensions."""
    return evaluate_many([student], batches)[0]


def fit(
    student: nn.Module, train: ActivationBatches, val: ActivationBatches, config: TrainConfig, variance: float
) -> dict[str, Any]:
    """Train for `config.epochs`; returns the per-epoch history and throughput."""
    return fit_together([student], train, val, [config], variance)[0]


def fit_together(
    students: list[nn.Module],
    train: ActivationBatches,
    val: ActivationBatches,
    configs: list[TrainConfig],
    variance: float,
) -> list[dict[str, Any]]:
    """Train several students on the same batches, one step of each per batch.

    Each student has its own optimiser and schedule and sees exactly the batches and updates it would see
    trained alone, so its result does not depend on its companions; what they share is the process, the
    store read, the gather of each batch and the validation batches.  Returns one result per student: the
    per-epoch history, and the seconds spent in its own steps and evaluations.
    """
    epochs = {config.epochs for config in configs}
    if len(epochs) != 1:
        raise ValueError(f"students trained together need the same epochs, got {sorted(epochs)}")
    (total_epochs,) = epochs
    optimizers = [make_optimizer(s, c.learning_rate) for s, c in zip(students, configs, strict=True)]
    schedulers = [
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_epochs * len(train)) for opt in optimizers
    ]
    histories: list[list[dict[str, Any]]] = [[] for _ in students]
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
                loss = _train_step(student, optimizer, x_BD, y_BD).item()
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
        val_mses = evaluate_many(students, val)
        eval_share = (time.perf_counter() - tick) / len(students)
        for i, (val_mse, config) in enumerate(zip(val_mses, configs, strict=True)):
            seconds[i] += eval_share
            if not math.isfinite(val_mse):
                raise NonFiniteLossError(f"run {config.run_name}: validation loss is {val_mse} after epoch {epoch + 1}")
            record = {
                "epoch": epoch + 1,
                "train_mse": loss_sums[i] / rows,
                "val_mse": val_mse,
                "val_fvu": val_mse / variance,
            }
            histories[i].append(record)
            log.info(
                "%s epoch %d: train MSE %.4g, val FVU %.4f",
                config.run_name,
                epoch + 1,
                record["train_mse"],
                record["val_fvu"],
            )
    return [
        {"history": history, "seconds": secs, "samples_per_second": rows_seen / secs}
        for history, secs in zip(histories, seconds, strict=True)
    ]
