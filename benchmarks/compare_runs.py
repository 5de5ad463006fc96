"""How far two runs of the same config agree: their stores value by value, their results run by run.

Made for the same config run on two machines, or on one machine with another BLAS code path, e.g. the default
run's Gaussian twins drawn again under `OPENBLAS_CORETYPE=Haswell` (the kernels a CPU without AVX-512 takes):

    cp -a RUN_A RUN_B && cd RUN_B
    OPENBLAS_CORETYPE=Haswell snakemake --cores 2 figures/all --forcerun sample_gaussian
    python benchmarks/compare_runs.py RUN_A RUN_B [--name NAME]

Prints, per store present in both runs, the float32 values and rows of x and y that differ and the largest
difference; per data kind and student, the largest relative difference of the best FVU over seeds; and the
verdict table's advantages and words side by side.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from _common import machine, save, table

STORES = ("results/activations", "results/gaussian")


def store_rows(a: Path, b: Path) -> list[list]:
    rows = []
    for manifest in sorted(a.glob("results/*/*/layer*/*.zarr/manifest.json")):
        store = manifest.parent.relative_to(a)
        if not str(store).startswith(STORES) or not (b / store).is_dir():
            continue
        ga, gb = zarr.open_group(str(a / store), mode="r"), zarr.open_group(str(b / store), mode="r")
        for name in ("x", "y"):
            xa, xb = ga[name][:], gb[name][:]
            differ = xa != xb
            rows.append(
                [str(store), name, f"{differ.sum():,} of {differ.size:,}", f"{differ.any(axis=1).sum():,}",
                 f"{np.abs(xa.astype(np.float64) - xb).max():.2e}"]
            )  # fmt: skip
    return rows


def fvu_rows(a: Path, b: Path) -> list[list]:
    keys = ["model", "layer", "data", "student", "seed"]
    left = pd.read_csv(a / "results/aggregate/best_by_seed.csv")
    right = pd.read_csv(b / "results/aggregate/best_by_seed.csv")
    both = left.merge(right, on=keys, suffixes=("_a", "_b"))
    both["relative"] = (both.best_fvu_a - both.best_fvu_b).abs() / both.best_fvu_a
    worst = both.groupby(["model", "data", "student"], as_index=False).relative.max()
    return [[r.model, r.data, r.student, f"{r.relative:.1e}"] for r in worst.itertuples()]


def verdict_rows(a: Path, b: Path) -> list[list]:
    left, right = (pd.read_csv(run / "results/aggregate/verdict.csv") for run in (a, b))
    return [
        [la.model, f"{la.advantage_real:.4f} / {ra.advantage_real:.4f}",
         f"{la.advantage_gaussian:.4f} / {ra.advantage_gaussian:.4f}", f"{la.verdict} / {ra.verdict}"]
        for la, ra in zip(left.itertuples(), right.itertuples(), strict=True)
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--name", default="compare_runs")
    args = parser.parse_args()
    a, b = args.run_a, args.run_b
    text = "\n\n".join(
        [
            f"# {a} against {b}\n# {machine()}",
            table(["store", "array", "float32 values that differ", "rows", "largest difference"], store_rows(a, b)),
            table(["model", "data", "student", "largest relative difference of the best FVU over seeds"],
                  fvu_rows(a, b)),
            table(["model", "MoE advantage, real (a / b)", "Gaussian (a / b)", "verdict (a / b)"], verdict_rows(a, b)),
        ]
    )  # fmt: skip
    save(args.name, text)


if __name__ == "__main__":
    main()
