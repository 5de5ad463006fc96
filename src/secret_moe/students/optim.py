"""The optimiser every student trains with: Adam, with each part's rate scaled (`RateScales`) and, optionally, lazy.

- `adam` (the authors'): PyTorch's fused single-pass Adam.  It performs the same update as `torch.optim.Adam`'s
  default (for-loop) implementation, up to float rounding, including the decay of the moments of rows whose gradient
  is zero this step (experts nobody selected), which keeps moving them; it reads and writes each parameter, gradient
  and moment once per step instead of once per elementary operation (on a 2-core CPU the step over the (m, d) expert
  tables of an m = 1e5 student is about 7x cheaper).  It needs floating-point parameters on CPU or CUDA; elsewhere
  this falls back to the default implementation.
- `lazy_adam`: the rows of the MoE's expert tables and of its router's gate (one row per expert) whose gradient is
  zero this step (no token selected the expert) keep their weights and moments: TensorFlow's LazyAdam, and what
  `torch.optim.SparseAdam` does with sparse gradients (`tests/students/test_recipe_options.py` checks the two
  agree).  The other parameters take plain Adam steps.  A dense MLP has no such rows: it trains as under `adam`.

The rate of each parameter group is the schedule's rate times the group's `lr_scale` (`scaled_rate`): the router's
and the experts' parameters may learn at their own multiple of the shared MLP's rate (an expert sees k/m of a batch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from secret_moe.errors import ConfigError

OPTIMIZERS = ("adam", "lazy_adam")


@dataclass(frozen=True)
class RateScales:
    """Multiples of the learning rate for the MoE's router and its experts (the shared MLP and every dense MLP take
    the rate itself)."""

    router: float = 1.0
    experts: float = 1.0

    def __post_init__(self) -> None:
        for name in ("router", "experts"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"distill.lr_scale.{name} must be a positive number, got {value!r}")


def _fused_ok(params: list[torch.Tensor]) -> bool:
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") and not p.is_sparse for p in params
    )


def _parts(student: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The student's trainable parameters by part: `router`, `experts` (tables with one row per expert neuron) and
    `dense` (all others: a dense MLP, the MoE's shared MLP and its output bias)."""
    parts: dict[str, list[nn.Parameter]] = {"router": [], "experts": [], "dense": []}
    for name, param in student.named_parameters():
        if not param.requires_grad:
            continue
        part = "dense"
        if name.startswith("router."):
            part = "router"
        elif name in ("w_in", "b_in", "w_out"):
            part = "experts"
        parts[part].append(param)
    return parts


def _row_params(student: nn.Module) -> set[int]:
    """ids of the parameters with one row per expert: the expert tables and the gate of a (full or low rank)
    router; these move only when routed under `lazy_adam`."""
    rows = [getattr(student, name) for name in ("w_in", "b_in", "w_out") if hasattr(student, name)]
    gate = getattr(getattr(student, "router", None), "gate", None)
    if gate is not None:
        rows += [gate.weight, gate.bias]
    return {id(p) for p in rows}


def make_optimizer(
    student: nn.Module, learning_rate: float, kind: str = "adam", scales: RateScales | None = None
) -> torch.optim.Optimizer:
    """Adam over all of the student's parameters (betas 0.9/0.999, eps 1e-8), one group per part, each with its
    `lr_scale`; `kind` one of OPTIMIZERS."""
    if kind not in OPTIMIZERS:
        raise ConfigError(f"distill.optimizer: {kind!r} is not one of {', '.join(OPTIMIZERS)}")
    scales = scales or RateScales()
    if kind == "adam" and scales == RateScales():  # one group, in the module's order: as before parts had rates
        params = [p for p in student.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=learning_rate, fused=_fused_ok(params))
    factor = {"router": scales.router, "experts": scales.experts, "dense": 1.0}
    groups = [
        {"params": params, "lr": learning_rate * factor[part], "lr_scale": factor[part]}
        for part, params in _parts(student).items()
        if params
    ]
    if kind == "lazy_adam":
        rows = _row_params(student)
        for group in groups:
            group["lazy"] = [id(p) in rows for p in group["params"]]
        return LazyAdam(groups, lr=learning_rate)
    params = [p for group in groups for p in group["params"]]
    return torch.optim.Adam(groups, lr=learning_rate, fused=_fused_ok(params))


def scaled_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Set every group's rate to `rate` times its `lr_scale`."""
    for group in optimizer.param_groups:
        group["lr"] = rate * group.get("lr_scale", 1.0)


class LazyAdam(torch.optim.Optimizer):
    """Adam in which a parameter marked lazy (its group's `lazy` list) updates only the rows whose gradient is not
    zero this step, weights and both moments; other rows stay as they are.  Bias correction counts the parameter's
    steps, as `torch.optim.SparseAdam` does.  Unmarked parameters take the ordinary Adam step."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "lazy": None})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lazy = group["lazy"] or [False] * len(group["params"])
            for param, is_lazy in zip(group["params"], lazy, strict=True):
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float64)
                    state["exp_avg"] = torch.zeros_like(param)
                    state["exp_avg_sq"] = torch.zeros_like(param)
                state["step"] += 1
                grad, rows = param.grad, slice(None)
                if is_lazy:
                    rows = grad.reshape(grad.shape[0], -1).ne(0).any(dim=1).nonzero().squeeze(1)
                    grad = grad[rows]
                exp_avg = state["exp_avg"][rows].mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = float(state["step"])
                denom = (exp_avg_sq / (1 - beta2**step)).sqrt_().add_(group["eps"])
                update = exp_avg / denom * (group["lr"] / (1 - beta1**step))
                if is_lazy:
                    state["exp_avg"][rows], state["exp_avg_sq"][rows] = exp_avg, exp_avg_sq
                    param[rows] -= update
                else:
                    param.sub_(update)
        return loss
