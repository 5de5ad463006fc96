"""The Gaussian control: exact mean and covariance of the real inputs, and samples with the same moments."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from tqdm import tqdm

from secret_moe.models.teacher import TeacherMLP
from secret_moe.store import create_store, finish_store, partial_path

log = logging.getLogger(__name__)


def fit_moments(x: zarr.Array | np.ndarray, block_rows: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean and (population) covariance in float64, streaming over row blocks.

    Accumulates sums around a first-block shift so large means do not cost precision.
    """
    rows, d = x.shape
    shift = np.asarray(x[: min(block_rows, rows)], dtype=np.float64).mean(axis=0)
    total, outer = np.zeros(d), np.zeros((d, d))
    for start in tqdm(range(0, rows, block_rows), desc="fit gaussian", unit="block"):
        block = np.asarray(x[start : start + block_rows], dtype=np.float64) - shift
        total += block.sum(axis=0)
        outer += block.T @ block
    centred_mean = total / rows
    cov = outer / rows - np.outer(centred_mean, centred_mean)
    return shift + centred_mean, cov, rows


def sampler_matrix(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root S of `cov` (S = Sᵀ, S S = cov), so x = mean + S z draws N(mean, cov).

    A PSD matrix has exactly one PSD square root, so the draw depends on the moments and the seed only, up to
    rounding.  The factor V·diag(√λ) of an eigendecomposition does not: the signs of the eigenvectors, and
    their rotation inside (near-)equal eigenvalues, are LAPACK's choice and change with its code path (another
    CPU's kernels gave another Gaussian store from the same moments and seed).  A dimension of zero variance
    (constant in the data: Gemma-3-270M's layer 9 has one) gets a zero row and column, so it stays exactly at
    its mean instead of carrying the rounding noise of a zero eigenvalue; negative eigenvalues from rounding
    are clipped, so a singular covariance is fine.
    """
    varying = np.diag(cov) > 0
    eigvals, eigvecs = np.linalg.eigh(cov[np.ix_(varying, varying)])
    root = (eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))) @ eigvecs.T
    full = np.zeros_like(cov)
    full[np.ix_(varying, varying)] = (root + root.T) / 2  # exactly symmetric, whatever the rounding
    return full


# The product S z is made exact, so that no BLAS kernel's order of summation can change a sample: z is rounded to
# a grid of 2^-Z_BITS inside ±Z_LIMIT (beyond 8 standard deviations falls one draw in 10^15) and each column of S
# to the bits below its largest entry that leave every partial sum of the D products under 2^53 units (`on_grid`:
# 28 at D = 640), so every product is an integer number of one unit per column and float64 holds each sum
# exactly, in any order. Both roundings are far below the sampling error of the moments (the covariance moves by
# about 1e-8 relative on the default run's).
Z_BITS, Z_LIMIT = 12, 8.0


def on_grid(root: np.ndarray) -> np.ndarray:
    """Each column of `root` rounded to the bits an exact product with a gridded z leaves it (see Z_BITS)."""
    d = root.shape[0]
    bits = 53 - (Z_BITS + math.ceil(math.log2(Z_LIMIT))) - math.ceil(math.log2(d))
    largest = np.abs(root).max(axis=0)
    exponent = np.where(largest > 0, np.ceil(np.log2(np.where(largest > 0, largest, 1.0))), 0.0)
    scale = np.exp2(bits - exponent)  # (D,) a power of two per column
    return np.round(root * scale) / scale


def gaussian_rows(mean: np.ndarray, cov: np.ndarray, rows: int, chunk_rows: int, seed: int) -> Iterator[np.ndarray]:
    """`rows` draws of N(mean, cov) in float32, `chunk_rows` at a time: mean + S z with S the symmetric root,
    computed exactly (both on grids: see Z_BITS), so the same moments and seed give the same bytes on any BLAS."""
    root_DD = on_grid(sampler_matrix(cov))
    rng = np.random.default_rng(seed)
    for start in range(0, rows, chunk_rows):
        z_ND = rng.standard_normal((min(chunk_rows, rows - start), len(mean)))
        z_ND = np.round(np.clip(z_ND, -Z_LIMIT, Z_LIMIT) * 2.0**Z_BITS) / 2.0**Z_BITS
        yield (mean + z_ND @ root_DD).astype(np.float32)


@torch.no_grad()
def write_gaussian_store(
    out_path: str | Path,
    *,
    mean: np.ndarray,
    cov: np.ndarray,
    teacher: TeacherMLP,
    rows: int,
    chunk_rows: int,
    seed: int,
    device: str,
    attrs: dict[str, Any],
) -> None:
    """Draw `rows` samples of N(mean, cov) chunk by chunk; y is the teacher applied to them."""
    partial = partial_path(out_path)
    group = create_store(partial, rows, len(mean), chunk_rows, attrs)
    start = 0
    chunks = gaussian_rows(mean, cov, rows, chunk_rows, seed)
    for x_ND in tqdm(chunks, desc="sample gaussian", unit="chunk", total=-(-rows // chunk_rows)):
        y_ND = teacher(torch.from_numpy(x_ND).to(device)).cpu().numpy()
        group["x"][start : start + len(x_ND)] = x_ND
        group["y"][start : start + len(y_ND)] = y_ND
        start += len(x_ND)
    finish_store(partial, out_path)
