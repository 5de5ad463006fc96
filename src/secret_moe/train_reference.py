"""A plain reference training loop for the MoE student: the oracle the package's training path is compared with.

Everything the package's path does for speed or bookkeeping is left out here: the student is the paper's formulation
(`students.baseline.PaperStudent`: dense router scores, `torch.topk`, softmax over the k kept scores), initialised
from a `MoEStudent`'s weights (`paper_from_student`), so both start from the same function, and computed by
`dense_forward` with plain autograd: every expert's pre-activation as one dense product, multiplied by the (B, m)
gates that are zero outside each token's top k. That is the paper's function and gradient (an expert nobody selected
gets a zero gradient, as from the embeddings' gather) without the (B, k, d) gathers, which cost about 3x more on a
CPU at the default size (0.7 s against 0.27 s a step at m = 1024, k = 32, d = 640, one thread). The optimiser is
`torch.optim.Adam` in its default (for-loop) implementation; the data are two in-memory tensors visited in a full
row permutation each epoch, drawn from a `torch.Generator` seeded with `seed`; the rate of every step is the
schedule's (`schedule.Schedule.factor`, as `train.fit_together` uses it under `wsd`; `cosine` as torch's
CosineAnnealingLR); the validation MSE is evaluated after every epoch.

`benchmarks/seed_spread.py` trains it beside the package's path on a real store (the seed spread of issue 30);
tests/train/test_reference.py checks that the two agree in distribution on a small store.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from secret_moe.schedule import Schedule, cosine_factor
from secret_moe.students.baseline import PaperStudent, paper_from_student


def dense_forward(paper: PaperStudent, x_BD: torch.Tensor) -> torch.Tensor:
    """`paper(x_BD)` computed densely: the experts' pre-activations for all m experts, gated by the (B, m)
    matrix holding the softmax of the k kept scores at the selected experts and zeros elsewhere."""
    moe = paper.moe
    scores_BK, idx_BK = moe.router(x_BD)
    gates_BM = torch.zeros(len(x_BD), moe.emb_down.num_embeddings, dtype=x_BD.dtype, device=x_BD.device)
    gates_BM = gates_BM.scatter(1, idx_BK, torch.softmax(scores_BK, dim=-1))
    pre_BM = x_BD @ moe.emb_down.weight.T + moe.down_bias.weight[:, 0]
    out_BD = (nn.functional.gelu(pre_BM) * gates_BM) @ moe.emb_up.weight + moe.up_bias
    return out_BD if paper.shared is None else out_BD + paper.shared(x_BD)


def rate_factor(schedule: Schedule, step: int, steps_per_epoch: int, epochs: int) -> float:
    """The learning rate at global step `step` (0-based) as a fraction of the base rate: the package's `wsd`
    rate, or the cosine decay to zero over the whole run as CosineAnnealingLR gives it (stepped after each step)."""
    if schedule.kind == "wsd":
        return schedule.factor(step, steps_per_epoch, epochs)
    return cosine_factor(step, epochs * steps_per_epoch)


@torch.no_grad()
def mse(student: PaperStudent, x_ND: torch.Tensor, y_ND: torch.Tensor, batch_size: int = 4096) -> float:
    """Mean squared error over all rows and dimensions (sums in float64)."""
    total = 0.0
    for start in range(0, len(x_ND), batch_size):
        error = dense_forward(student, x_ND[start : start + batch_size]) - y_ND[start : start + batch_size]
        total += float(error.double().pow(2).sum())
    return total / y_ND.numel()


def train_reference(
    student: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor],
    *,
    epochs: int,
    learning_rate: float,
    variance: float,
    seed: int,
    schedule: Schedule | None = None,
    batch_size: int = 1024,
    orders: list[torch.Tensor] | None = None,
) -> tuple[PaperStudent, list[dict[str, Any]]]:
    """Train the paper's formulation of the MoE student `student` (a `MoEStudent`, left untouched) on
        `train` = (x, y) for `epochs` epochs; returns the trained `PaperStudent` and the per-epoch history
        (epoch, train_mse, val_mse, val_fvu: the records of `train.fit_together`).  `orders`, if given, holds each
    epoch's row order instead of the seeded full permutation (to replay another path's batches)."""
    schedule = schedule or Schedule()
    model = paper_from_student(student).to(train[0].device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, foreach=False, fused=False)
    generator = torch.Generator().manual_seed(seed)
    x_ND, y_ND = train
    rows = len(x_ND)
    steps = math.ceil(rows / batch_size)
    history = []
    for epoch in range(epochs):
        order = orders[epoch] if orders is not None else torch.randperm(rows, generator=generator)
        order = order.to(x_ND.device)
        loss_sum = 0.0
        for step in range(steps):
            picked = order[step * batch_size : (step + 1) * batch_size]
            for group in optimizer.param_groups:
                group["lr"] = learning_rate * rate_factor(schedule, epoch * steps + step, steps, epochs)
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.mse_loss(dense_forward(model, x_ND[picked]), y_ND[picked])
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(picked)
        val_mse = mse(model, *validation)
        history.append(
            {"epoch": epoch + 1, "train_mse": loss_sum / rows, "val_mse": val_mse, "val_fvu": val_mse / variance}
        )
    return model, history
