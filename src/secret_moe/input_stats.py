"""Statistics of a layer's inputs x that tell real activations from their Gaussian twin, from one pass over a store
(row blocks, float64 accumulators):

- `kurtosis_mean`, `kurtosis_median`: the excess kurtosis E[(p − Ep)⁴] / Var(p)² − 3 of the projections p = u·x
  of x onto a fixed set of random unit vectors u (`projection_directions`, seeded), averaged over the directions.
  0 for any Gaussian; heavy tails (outlier tokens, a few huge rows) make it positive.
- `participation_ratio`: tr(C)² / tr(C²) of the covariance C of x, the number of directions its variance spreads
  over (1 for a rank-one C, d for an isotropic one). The twin has the same C, so the same ratio up to sampling.
- `largest_group_rows`, `largest_group_row_share`, `largest_group_variance_share`: the largest group of identical
  inputs (rows hashed as for rows_by_kind.csv, `rows.row_hashes`), its rows, and its share of Var(y),
  n_G ‖y_G − μ‖² / Σ_r ‖y_r − μ‖² (μ the mean of y over all rows; y is a function of x, so the group's first row
  gives y_G). Real stores repeat the BOS row at every line start; Gaussian samples never repeat.
- `special_share`, `pad_share`: the shares of rows of kind special (BOS and the tokenizer's other special tokens)
  and pad (`rows.ROW_KINDS`); None for a store without row kinds (Gaussian samples).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import zarr
from tqdm import tqdm

from secret_moe.rows import PAD, SPECIAL, read_kinds, row_hashes

log = logging.getLogger(__name__)

PROJECTIONS = 64  # random directions for the kurtosis: its median over them is stable to a few percent


def projection_directions(d: int, count: int, seed: int) -> np.ndarray:
    """`count` random unit vectors of R^d, uniform on the sphere, as the columns of a (d, count) matrix."""
    u_DP = np.random.default_rng(seed).standard_normal((d, count))
    return u_DP / np.linalg.norm(u_DP, axis=0)


class _Moments:
    """Power sums of the projections and the covariance of x, around a shift (the first block's mean) so that
    a large mean costs no precision."""

    def __init__(self, shift_D: np.ndarray, u_DP: np.ndarray) -> None:
        self.shift_D, self.u_DP = shift_D, u_DP
        self.rows = 0
        self.sum_D, self.outer_DD = np.zeros(len(shift_D)), np.zeros((len(shift_D), len(shift_D)))
        self.powers_KP = np.zeros((4, u_DP.shape[1]))  # Σ p^k, k = 1..4

    def add(self, x_ND: np.ndarray) -> None:
        centred_ND = x_ND - self.shift_D
        self.rows += len(x_ND)
        self.sum_D += centred_ND.sum(axis=0)
        self.outer_DD += centred_ND.T @ centred_ND
        p_NP = centred_ND @ self.u_DP
        for k in range(4):
            self.powers_KP[k] += (p_NP ** (k + 1)).sum(axis=0)

    def covariance(self) -> np.ndarray:
        mean_D = self.sum_D / self.rows
        return self.outer_DD / self.rows - np.outer(mean_D, mean_D)

    def excess_kurtosis(self) -> np.ndarray:
        """Per direction, from the raw moments of the (shifted) projections."""
        m1, m2, m3, m4 = self.powers_KP / self.rows
        variance = m2 - m1**2
        fourth = m4 - 4 * m1 * m3 + 6 * m1**2 * m2 - 3 * m1**4
        return fourth / variance**2 - 3


def input_stats(
    group: zarr.Group, *, projections: int = PROJECTIONS, seed: int = 0, block_rows: int = 16384
) -> dict[str, Any]:
    """The statistics of the module's docstring for one store, in one pass over its rows."""
    rows, d = group["x"].shape
    kinds = read_kinds(group, str(group.store))
    first_x = np.asarray(group["x"][: min(block_rows, rows)], dtype=np.float64)
    moments = _Moments(first_x.mean(axis=0), projection_directions(d, projections, seed))
    y_shift_D = np.asarray(group["y"][: min(block_rows, rows)], dtype=np.float64).mean(axis=0)
    y_sum_D, y_squares = np.zeros(y_shift_D.shape), 0.0  # of y − y_shift
    groups: dict[bytes, list[int]] = {}  # each distinct x: [its first row, its rows]
    for start in tqdm(range(0, rows, block_rows), desc="input stats", unit="block"):
        x_block = group["x"][start : start + block_rows]
        y_ND = group["y"][start : start + block_rows].astype(np.float64) - y_shift_D
        moments.add(x_block.astype(np.float64))
        y_sum_D += y_ND.sum(axis=0)
        y_squares += float((y_ND**2).sum())
        for offset, key in enumerate(row_hashes(x_block)):
            groups.setdefault(key, [start + offset, 0])[1] += 1
    first, size = max(groups.values(), key=lambda g: g[1])
    mean_D = y_sum_D / rows  # μ − y_shift
    spread = y_squares - rows * float(mean_D @ mean_D)  # Σ_r ‖y_r − μ‖²
    y_group_D = np.asarray(group["y"][first], dtype=np.float64) - y_shift_D
    kurtosis = moments.excess_kurtosis()
    cov_DD = moments.covariance()
    stats = {
        "rows": rows,
        "kurtosis_mean": float(kurtosis.mean()),
        "kurtosis_median": float(np.median(kurtosis)),
        "participation_ratio": float(np.trace(cov_DD) ** 2 / np.sum(cov_DD * cov_DD)),
        "largest_group_rows": size,
        "largest_group_row_share": size / rows,
        "largest_group_variance_share": size * float(np.sum((y_group_D - mean_D) ** 2)) / spread,
        "special_share": None if kinds is None else float(np.mean(kinds == SPECIAL)),
        "pad_share": None if kinds is None else float(np.mean(kinds == PAD)),
    }
    log.info("input statistics of %s: %s", group.store, stats)
    return stats


def compare_with_twin(real: zarr.Group, twin: zarr.Group, **settings: Any) -> list[dict[str, Any]]:
    """The statistics of a store of real inputs and of its Gaussian twin (same mean and covariance, same
    `settings` of `input_stats`: the same projection directions), one row each, labelled by `data`."""
    return [
        {"data": data, **input_stats(group, **settings)} for data, group in (("activations", real), ("gaussian", twin))
    ]
