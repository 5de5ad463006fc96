"""Row provenance of activation stores: which position of which line each row of x and y comes from.

Every activation store holds three arrays aligned with x and y (same shuffled order, same chunking):

- `position` (int32): the row's index counted from its line's first token.  Padded positions continue
  the count past the line's end with right padding (position ≥ line length, as Pythia pads) and count
  back before its start with left padding (negative positions, as Gemma pads), so the side shows.
- `token_id` (int32): the token fed at that position; the pad id at padded positions.
- `kind` (uint8): the code of `ROW_KINDS`: a text token, a special token (BOS or any other of the
  tokenizer's special ids, wherever it sits in the line) or a padded position (attention mask 0).

Gaussian stores have none of them: their rows are samples of N(mean, cov), not positions (attrs
`rows: samples`), so they have no kind and their FVU is not split by kind.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import zarr

from secret_moe.errors import StoreMismatchError

ROW_KINDS = ("token", "special", "pad")  # the name of each kind code: ROW_KINDS[code]
TOKEN, SPECIAL, PAD = range(len(ROW_KINDS))
ROW_ARRAYS = {"position": "int32", "token_id": "int32", "kind": "uint8"}


def provenance_attrs(pad_id: int, padding_side: str, special_ids: list[int]) -> dict[str, Any]:
    """Store attributes that say what the row arrays hold."""
    return {
        "rows": "positions",
        "row_arrays": list(ROW_ARRAYS),
        "row_kinds": {str(code): name for code, name in enumerate(ROW_KINDS)},
        "pad_id": pad_id,
        "padding_side": padding_side,
        "special_ids": sorted(special_ids),
    }


def sample_attrs(real_attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes of a Gaussian store made like a real one: its rows are samples, with no row arrays."""
    attrs = {key: value for key, value in real_attrs.items() if key not in ("row_arrays", "row_kinds")}
    return {**attrs, "rows": "samples"}


def batch_rows(
    ids_BT: torch.Tensor, mask_BT: torch.Tensor, special_ids: list[int], pad_left: bool
) -> dict[str, torch.Tensor]:
    """Position, token id and kind of every position of a padded batch, each (B, T)."""
    width = ids_BT.shape[1]
    lengths_B1 = mask_BT.sum(dim=1, keepdim=True)
    first_B1 = width - lengths_B1 if pad_left else torch.zeros_like(lengths_B1)
    position_BT = torch.arange(width)[None, :] - first_B1
    kind_BT = torch.full_like(ids_BT, TOKEN)
    kind_BT[torch.isin(ids_BT, torch.tensor(special_ids, dtype=ids_BT.dtype))] = SPECIAL
    kind_BT[mask_BT == 0] = PAD
    return {
        "position": position_BT.to(torch.int32),
        "token_id": ids_BT.to(torch.int32),
        "kind": kind_BT.to(torch.uint8),
    }


def read_kinds(group: zarr.Group, where: str) -> np.ndarray | None:
    """The kind code of every row, in store order; None for stores whose rows are not positions (Gaussian
    samples, hand-made stores).  An activation store written before row provenance existed is refused."""
    attrs = dict(group.attrs)
    if attrs.get("rows") == "samples" or attrs.get("data") == "gaussian":
        return None
    if "kind" in group:
        return group["kind"][:]
    if "capture_config" in attrs:  # written by capture_activations, but by an older version
        raise StoreMismatchError(
            f"activation store {where!r} has no row provenance (position, token_id, kind arrays): it was "
            f"written before they were recorded. Delete it (rm -r {where}) and rerun snakemake to rebuild it."
        )
    return None


@dataclass
class KindSplit:
    """The rows of a store by kind: each row's kind (store order) and, per kind, the row count and the sums
    of y and y² per dimension, in float64."""

    kinds_N: np.ndarray
    rows_K: np.ndarray
    sum_KD: np.ndarray
    squares_KD: np.ndarray

    def spread_K(self) -> np.ndarray:
        """V_K = Σ_{r of kind K} ‖y_r − μ‖², μ the all-rows mean."""
        mean_D = self.sum_KD.sum(axis=0) / self.rows_K.sum()
        return (self.squares_KD - 2 * mean_D * self.sum_KD + self.rows_K[:, None] * mean_D**2).sum(axis=1)

    def own_spread_K(self) -> np.ndarray:
        """Σ_{r of kind K} ‖y_r − μ_K‖², μ_K the kind's own mean (0 for a kind without rows)."""
        rows_K1 = np.maximum(self.rows_K, 1)[:, None]
        return (self.squares_KD - self.sum_KD**2 / rows_K1).sum(axis=1)

    def variance(self) -> float:
        """The FVU denominator: mean over dimensions of the per-dimension variance of y, all rows."""
        return float(self.spread_K().sum() / (self.rows_K.sum() * self.sum_KD.shape[1]))


def row_hashes(x_ND: np.ndarray) -> list[bytes]:
    """A short hash of each row's bytes: rows with equal hashes are the same input (identical x)."""
    return [hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in np.ascontiguousarray(x_ND)]


def kind_summary(group: zarr.Group, block_rows: int = 16384) -> list[dict[str, Any]]:
    """Per row kind (and over `all` rows) of an activation store: how many rows, how many distinct inputs x,
    the size of the largest group of identical x, the kind's share of Var(y) (Σ over its rows of ‖y − μ‖², μ
    the mean over all rows, over the same sum over all rows), Var(y) of its rows alone, and its typical ‖y‖.
    One pass."""
    stored = read_kinds(group, str(group.store))
    rows, dims = group["y"].shape
    kinds = np.zeros(rows, dtype=np.uint8) if stored is None else stored
    codes = {name: code for code, name in enumerate(ROW_KINDS)}
    count = np.zeros(len(ROW_KINDS))
    sum_y, squares = np.zeros((len(ROW_KINDS), dims)), np.zeros((len(ROW_KINDS), dims))
    hashes: list[list[bytes]] = [[] for _ in ROW_KINDS]
    norms: list[list[np.ndarray]] = [[] for _ in ROW_KINDS]
    for start in range(0, rows, block_rows):
        x = np.ascontiguousarray(group["x"][start : start + block_rows])
        y = group["y"][start : start + block_rows].astype(np.float64)
        kind = kinds[start : start + block_rows]
        for code in range(len(ROW_KINDS)):
            mine = kind == code
            y_mine = y[mine]
            count[code] += len(y_mine)
            sum_y[code] += y_mine.sum(0)
            squares[code] += (y_mine**2).sum(0)
            norms[code].append(np.linalg.norm(y_mine, axis=1))
            hashes[code] += row_hashes(x[mine])
    split = KindSplit(kinds, count, sum_y, squares)
    spread, own_spread_K = split.spread_K(), split.own_spread_K()
    table = []
    for name, code in [*codes.items(), ("all", None)]:
        picked = list(codes.values()) if code is None else [code]
        n = int(count[picked].sum())
        if not n:
            continue
        groups = Counter(h for c in picked for h in hashes[c])
        # around the rows' own mean: the kind's, or for all rows the all-rows mean μ of `spread`
        own_spread = spread.sum() if code is None else own_spread_K[code]
        y_norm = np.concatenate([part for c in picked for part in norms[c]])
        table.append(
            {
                "kind": name,
                "rows": n,
                "row_share": n / rows,
                "distinct_x": len(groups),
                "largest_group": max(groups.values()),
                "variance_share": float(spread[picked].sum() / spread.sum()),
                # the kind's own Var(y): mean over dimensions of the variance around the kind's own mean (y is
                # a function of x, so rows with one and the same x have none, whatever the rounding says)
                "y_variance": 0.0 if len(groups) == 1 else max(0.0, float(own_spread / (n * dims))),
                "mean_y_norm": float(y_norm.mean()),
                "median_y_norm": float(np.median(y_norm)),
            }
        )
    return table
