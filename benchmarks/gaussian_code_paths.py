"""Does the Gaussian draw depend on the BLAS/LAPACK code path? Side by side, in one run.

The same moments and seed are drawn in fresh processes, each forcing another OpenBLAS kernel set
(`OPENBLAS_CORETYPE`: what another CPU would pick, e.g. Haswell kernels on a CPU without AVX-512), with two
square roots of the covariance: the package's (`gaussian.gaussian_rows`: the symmetric root, its product with z made
exact on grids) and the earlier
eigenvector factor V·diag(√λ) (kept here only to measure the difference). Every draw is compared with the
first code path's: identical bytes, the share of float32 values that differ, and the largest difference in
units of each dimension's standard deviation.

    python benchmarks/gaussian_code_paths.py MOMENTS.npz [--rows 20000] [--coretypes Haswell SkylakeX ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from _common import machine, save, table
from secret_moe.gaussian import gaussian_rows

CHUNK_ROWS = 820  # the default store's rows per chunk at d = 640 (2 MiB chunks)


def eigenvector_rows(mean: np.ndarray, cov: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """The earlier construction: x = mean + z (V·diag(√λ))ᵀ, whose columns' signs are LAPACK's choice."""
    eigvals, eigvecs = np.linalg.eigh(cov)
    factor = eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))
    rng = np.random.default_rng(seed)
    blocks = []
    for start in range(0, rows, CHUNK_ROWS):
        z_ND = rng.standard_normal((min(CHUNK_ROWS, rows - start), len(mean)))
        blocks.append((mean + z_ND @ factor.T).astype(np.float32))
    return np.concatenate(blocks)


def worker(moments: str, out: str, rows: int, seed: int) -> None:
    fitted = np.load(moments)
    mean, cov = fitted["mean"], fitted["cov"]
    draws = {
        "symmetric, exact": np.concatenate(list(gaussian_rows(mean, cov, rows, CHUNK_ROWS, seed))),
        "eigenvectors": eigenvector_rows(mean, cov, rows, seed),
    }
    np.savez(out, **draws)
    print(json.dumps({name: hashlib.sha256(x.tobytes()).hexdigest()[:16] for name, x in draws.items()}))


def draw(moments: str, coretype: str, rows: int, seed: int, folder: Path) -> dict[str, np.ndarray]:
    env = {**os.environ, "OPENBLAS_CORETYPE": coretype} if coretype != "auto" else dict(os.environ)
    out = folder / f"{coretype}.npz"
    cmd = [sys.executable, __file__, "--worker", moments, str(out), str(rows), str(seed)]
    subprocess.run(cmd, check=True, env=env)
    return dict(np.load(out))


def compare(reference: np.ndarray, other: np.ndarray, std_D: np.ndarray) -> list[str]:
    differ = reference != other
    largest = np.max(np.abs(reference.astype(np.float64) - other) / std_D)
    same = reference.tobytes() == other.tobytes()
    return ["yes" if same else "no", f"{differ.mean():.2e}", f"{largest:.2e}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("moments", help="a fit_gaussian output (results/moments/<model>/layer<l>.npz)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--coretypes", nargs="+", default=["auto", "Haswell", "SkylakeX", "Sandybridge"])
    parser.add_argument("--name", default="gaussian_code_paths")
    args = parser.parse_args()
    std_D = np.sqrt(np.clip(np.diag(np.load(args.moments)["cov"]), 1e-30, None))
    with tempfile.TemporaryDirectory() as tmp:
        draws = {ct: draw(args.moments, ct, args.rows, args.seed, Path(tmp)) for ct in args.coretypes}
    first = args.coretypes[0]
    rows = [
        [root, f"{first} vs {ct}", *compare(draws[first][root], draws[ct][root], std_D)]
        for root in ("symmetric, exact", "eigenvectors")
        for ct in args.coretypes[1:]
    ]
    headers = ["square root", "OpenBLAS kernels", "same bytes", "float32 values that differ", "largest diff / std"]
    text = "\n".join(
        [
            f"# {args.moments}: {args.rows} rows, seed {args.seed}",
            f"# {machine()}",
            table(headers, rows),
        ]
    )
    save(args.name, text)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        main()
