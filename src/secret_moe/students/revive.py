"""Reviving dead experts (`distill.revive`): at the end of a training epoch, every expert that no training row was
routed to in that epoch is re-drawn from the data, as sparse-autoencoder trainers resample dead neurons.

For each dead expert, a row of a fixed training sample is drawn with probability proportional to the student's
squared error on it (the rows it fits worst); then
- the expert's input vector points along that row (pre-activation 1 on it, 0 at the sample mean, as
  `data_init` sets it), its output vector is zero (the student's function does not jump) and its Adam moments
  restart from zero;
- its router row points along the row (through the low-rank query), with the mean norm of the living experts'
  rows, and its bias puts its score on that row at the row's best score (it enters the top k there, and on rows
  like it).
Revival runs on the trunk's epochs (a cooldown branch never revives: an expert revived during a cooldown would have no
time to learn), up to where a cooldown starts (`REVIVALS`):
- `first_rung`: the first budget's, so every rung of the ladder shares one revival history and a longer rung only
  trains longer (measured: revival up to the last cooldown keeps the trunk unsettled, and the 24-epoch rung ended
  worse than the 12-epoch one, docs/convergence.md);
- `trunk`: the last budget's.
Full- and low-rank routers only.
"""

from __future__ import annotations

import torch

from secret_moe.errors import ConfigError
from secret_moe.schedule import Schedule
from secret_moe.students.data_init import DATA_ROUTERS, neuron_weights, router_query
from secret_moe.students.moe import MoEStudent

REVIVALS = ("none", "first_rung", "trunk")


def revival_ends(schedule: Schedule, budgets: list[int]) -> dict[str, int]:
    """The last epoch after which each mode revives: where the first or the last budget's cooldown starts (0, never,
    without warmup-stable-decay)."""
    if schedule.kind != "wsd":
        return dict.fromkeys(REVIVALS, 0)
    return {"none": 0, "first_rung": schedule.cooldown_start(budgets[0]), "trunk": schedule.cooldown_start(budgets[-1])}


def _reset_moments(optimizer: torch.optim.Optimizer, params: list[torch.Tensor], rows: torch.Tensor) -> None:
    for param in params:
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                state[key][rows] = 0


@torch.no_grad()
def revive_dead(
    student: MoEStudent,
    optimizer: torch.optim.Optimizer,
    routed: torch.Tensor,
    sample: tuple[torch.Tensor, torch.Tensor],
    seed: int,
) -> int:
    """Re-draw the experts with no rows in `routed` (the epoch's `take_routed()`; see the module docstring); returns
    how many.  `sample`: training rows (x, y) on the student's device; `seed`: this revival's."""
    if student.config.router not in DATA_ROUTERS or student.config.expert_width != 1:
        raise ConfigError(
            f"distill.revive: needs single-neuron experts and a router among {', '.join(DATA_ROUTERS)}, "
            f"not {student.config.router!r} with experts of width {student.config.expert_width}"
        )
    dead = (routed == 0).nonzero().squeeze(1).to(student.w_in.device)
    if len(dead) == 0:
        return 0
    x_ND, y_ND = sample
    was_training = student.training
    student.eval()
    error_N = (student(x_ND) - y_ND).pow(2).sum(dim=1).double().cpu()
    generator = torch.Generator().manual_seed(seed)
    rows = torch.multinomial(error_N, len(dead), replacement=len(dead) > len(error_N), generator=generator)
    rows_RD, mean_D = x_ND[rows.to(x_ND.device)], x_ND.mean(dim=0)
    student.w_in[dead], student.b_in[dead] = neuron_weights(rows_RD, mean_D)
    student.w_out[dead] = 0
    gate, alive = student.router.gate, torch.ones(student.config.experts, dtype=torch.bool, device=dead.device)
    alive[dead] = False
    query_RR = router_query(student, rows_RD)
    keys = query_RR - router_query(student, mean_D[None])
    norm = gate.weight[alive].norm(dim=1).mean() if alive.any() else gate.weight.norm(dim=1).mean()
    gate.weight[dead] = keys / keys.norm(dim=1, keepdim=True).clamp_min(1e-12) * norm
    gate.bias[dead] = 0
    best = (query_RR @ gate.weight.T + gate.bias).amax(dim=1)  # each row's best score now
    gate.bias[dead] = best - (gate.weight[dead] * query_RR).sum(dim=1)
    _reset_moments(optimizer, [student.w_in, student.b_in, student.w_out, gate.weight, gate.bias], dead)
    student.train(was_training)
    return len(dead)
