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

from secret_moe.data import ActivationBatches
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
def evaluate(student: nn.Module, batches: ActivationBatches) -> float:
    """Validation MSE averaged over all rows and dimensions."""
    student.eval()
    squared = 0.0
    for x_BD, y_BD in batches.epoch():
        squared += (student(x_BD) - y_BD).double().pow(2).sum().item()
    student.train()
    return squared / (batches.rows * batches.d_model)


def fit(
    student: nn.Module, train: ActivationBatches, val: ActivationBatches, config: TrainConfig, variance: float
) -> dict[str, Any]:
    """Train for `config.epochs`; returns the per-epoch history and throughput."""
    optimizer = make_optimizer(student, config.learning_rate)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * len(train))
    history, train_seconds, samples = [], 0.0, 0
    student.train()
    for epoch in range(config.epochs):
        tick, loss_sum, rows = time.perf_counter(), 0.0, 0
        progress = tqdm(
            train.epoch(epoch),
            total=len(train),
            desc=f"{config.run_name} epoch {epoch + 1}",
            mininterval=5,
            leave=False,
        )
        for step, (x_BD, y_BD) in enumerate(progress):
            loss = _train_step(student, optimizer, x_BD, y_BD).item()
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"run {config.run_name}: training loss became {loss} at epoch {epoch + 1}, step {step + 1}"
                )
            scheduler.step()
            loss_sum, rows = loss_sum + loss * len(x_BD), rows + len(x_BD)
        train_seconds += time.perf_counter() - tick
        samples += rows
        val_mse = evaluate(student, val)
        if not math.isfinite(val_mse):
            raise NonFiniteLossError(f"run {config.run_name}: validation loss is {val_mse} after epoch {epoch + 1}")
        record = {"epoch": epoch + 1, "train_mse": loss_sum / rows, "val_mse": val_mse, "val_fvu": val_mse / variance}
        history.append(record)
        log.info(
            "%s epoch %d: train MSE %.4g, val FVU %.4f",
            config.run_name,
            epoch + 1,
            record["train_mse"],
            record["val_fvu"],
        )
    return {"history": history, "train_seconds": train_seconds, "samples_per_second": samples / train_seconds}
