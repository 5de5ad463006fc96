"""FVU by row kind: how a validation FVU splits over the token, special and pad rows of an activation store.

With μ the all-rows mean of y, V_K = Σ_{r of kind K} ‖y_r − μ‖² and E_K = Σ_{r of kind K} ‖ŷ_r − y_r‖²:

    FVU = E / V = Σ_K (V_K / V) · (E_K / V_K)

so each kind has a variance share V_K / V, an error share E_K / E and an FVU E_K / V_K against its part of
the all-rows variance: the shares times the kinds' FVUs recombine exactly into the all-rows FVU (the
published number).  `fvu_own` divides the kind's MSE by its own variance (around its own mean) instead: the
FVU a store of that kind alone would give.  Everything comes from per-kind sums of y and y² (one pass over
the store) and per-kind sums of squared errors (the evaluation's own pass).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from secret_moe.batches import ActivationBatches
from secret_moe.rows import ROW_KINDS, KindSplit
from secret_moe.students.moe import MoEStudent

TOP_EXPERTS = 10  # router usage: the share of gate mass on this many most used experts
# A kind whose own variance is below this fraction of the total has none to explain (rows all equal, e.g.
# identical pads): its `fvu_own` is None rather than a division by rounding noise.
_NO_VARIANCE = 1e-12


def batch_kinds(batches: ActivationBatches, kinds_N: np.ndarray) -> Iterator[torch.Tensor]:
    """The kind codes of the rows of each batch of `batches.epoch()`, in the same order."""
    ordered = kinds_N[batches.row_order(0)]
    for start in range(0, batches.rows, batches.batch_size):
        yield torch.from_numpy(ordered[start : start + batches.batch_size].astype(np.int64)).to(batches.device)


def kind_split(batches: ActivationBatches, kinds_N: np.ndarray) -> KindSplit:
    """Per-kind row counts and sums of y and y², in one pass over the batches."""
    count = len(ROW_KINDS)
    sum_KD = torch.zeros(count, batches.d_model, dtype=torch.float64, device=batches.device)
    squares_KD = torch.zeros_like(sum_KD)
    for (_, y_BD), kind_B in zip(batches.epoch(), batch_kinds(batches, kinds_N), strict=True):
        y_BD = y_BD.double()
        sum_KD.index_add_(0, kind_B, y_BD)
        squares_KD.index_add_(0, kind_B, y_BD**2)
    rows_K = np.bincount(kinds_N, minlength=count).astype(np.float64)
    return KindSplit(kinds_N, rows_K, sum_KD.cpu().numpy(), squares_KD.cpu().numpy())


def kind_report(errors_K: np.ndarray, split: KindSplit) -> dict[str, dict[str, float]]:
    """For each kind with rows: its row count, variance and error shares, its FVU against its part of the
    all-rows variance (`fvu`; Σ variance_share · fvu = the all-rows FVU) and against its own (`fvu_own`,
    None for rows without variance of their own)."""
    spread_K, own_K, d_model = split.spread_K(), split.own_spread_K(), split.sum_KD.shape[1]
    report = {}
    for code, name in enumerate(ROW_KINDS):
        rows = split.rows_K[code]
        if not rows:
            continue
        report[name] = {
            "rows": int(rows),
            "variance_share": float(spread_K[code] / spread_K.sum()),
            "error_share": float(errors_K[code] / errors_K.sum()),
            "mse": float(errors_K[code] / (rows * d_model)),
            "fvu": float(errors_K[code] / spread_K[code]),
            "fvu_own": float(errors_K[code] / own_K[code]) if own_K[code] > _NO_VARIANCE * spread_K.sum() else None,
        }
    return report


@torch.no_grad()
def router_usage(
    student: MoEStudent, batches: ActivationBatches, kinds_N: np.ndarray | None, top: int = TOP_EXPERTS
) -> dict[str, dict[str, float]]:
    """How the router spreads each kind's rows over experts: the experts its top-k selections use, and the
    share of its gate mass (softmax over the k selected scores, one per row) on its `top` most used
    experts.  Over all rows ("all") and per kind when the store has kinds."""
    student.eval()
    count, experts = len(ROW_KINDS) + 1, student.config.experts  # the kinds, then all rows
    mass_KM = torch.zeros(count, experts, dtype=torch.float64, device=batches.device)
    picks_KM = torch.zeros(count, experts, dtype=torch.int64, device=batches.device)
    kinds = batch_kinds(batches, kinds_N) if kinds_N is not None else None
    for x_BD, _ in batches.epoch():
        scores_BK, idx_BK = student.router(x_BD)
        gates_BK = torch.softmax(scores_BK, dim=-1).double()
        slots = [idx_BK.flatten() + (count - 1) * experts]  # flat (kind, expert) slots: all rows ...
        if kinds is not None:  # ... and the row's kind
            slots.append((next(kinds)[:, None] * experts + idx_BK).flatten())
        for slot in slots:
            mass_KM.view(-1).index_add_(0, slot, gates_BK.flatten())
            picks_KM.view(-1).index_add_(0, slot, torch.ones_like(slot))
    student.train()
    usage = {}
    for code, name in enumerate([*ROW_KINDS, "all"]):
        mass_M, picks = mass_KM[code], int(picks_KM[code].sum())
        if picks == 0:
            continue
        usage[name] = {
            "rows": picks // idx_BK.shape[1],
            "distinct_experts": int((picks_KM[code] > 0).sum()),
            "top_experts_share": float(mass_M.topk(min(top, experts)).values.sum() / mass_M.sum()),
        }
    return usage
