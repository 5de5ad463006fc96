"""The real MoE's seed spread (issue 30): one student, several seeds, the package's training path against others.

Trains ONE student (default: the default config's MoE) on a store for E epochs under warmup-stable-decay at lr
3e-3 (warmup 1 epoch, cooldown 20% of E, the default config's 32-epoch rung), batch 1024, for each seed and
variant, one process at a time (one torch thread each):

- `package`: the default run's path exactly: `steps.distill._Data` (ActivationBatches, in memory, group_chunks 8,
  the run's seed for init and batches, the FVU denominator of the validation split) and `train.fit_together`;
- `full_perm`: the same with `group_chunks` 0: a full row permutation of the store each epoch;
- `unfused`: `package` with `SECRET_MOE_FUSED=0` (the PyTorch sparse path instead of the fused CPU kernels);
- `full_perm_unfused`: `full_perm` with `SECRET_MOE_FUSED=0`;
- `full_perm_loop_adam`: `full_perm` with `torch.optim.Adam`'s default (for-loop) implementation instead of the fused
  one (`students.optim._fused_ok` answers no), as `plain` uses;
- `plain`: `train_reference.train_reference`: the paper's formulation from the same initial weights, dense
  autograd, `torch.optim.Adam` (for-loop), a full row permutation from a seeded `torch.Generator`, the same rates;
- `plain_groups`: `plain` visiting rows in the package's order (`ActivationBatches.row_order`, group_chunks 8).

    python benchmarks/seed_spread.py --train results/activations/gemma3-270m/layer9/train.zarr \\
        --validation results/activations/gemma3-270m/layer9/validation.zarr \\
        --variants package full_perm --seeds 0 1 2 3 4 --out benchmarks/results/seed_spread

Each run is a worker process writing `runs/<variant>_s<seed>.json` (history, wall time) and a log under --out; a
rerun skips the runs done.  After each run, and with `--summarise`, `seed_spread.csv` (one row per variant, seed
and epoch: validation FVU) and `summary.md` (per variant: best FVU per seed, mean, std/mean, (max - min)/mean,
wall time per run) are rebuilt from the runs there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

STUDENT = "moe_lowrank_r128_m1024_s32_k32"
SCHEDULE = {"kind": "wsd", "warmup_epochs": 1, "cooldown_fraction": 0.2, "rungs": 1}


@dataclass(frozen=True)
class Variant:
    """How a variant trains: through the package's `fit_together` or the plain loop, the chunk groups of its
    batches (0: a full row permutation; the plain loops draw their own order), the fused CPU kernels
    (`SECRET_MOE_FUSED`) and the fused Adam."""

    package_path: bool = True
    group_chunks: int = 8
    fused_kernels: bool = True
    fused_adam: bool = True


VARIANTS = {
    "package": Variant(),
    "full_perm": Variant(group_chunks=0),
    "unfused": Variant(fused_kernels=False),
    "full_perm_unfused": Variant(group_chunks=0, fused_kernels=False),
    "full_perm_loop_adam": Variant(group_chunks=0, fused_adam=False),
    "plain": Variant(package_path=False),
    "plain_groups": Variant(package_path=False),
}


def worker(variant: str, seed: int, args: argparse.Namespace) -> dict:
    """Train one (variant, seed); returns its record (history and wall seconds)."""
    import torch

    from secret_moe.provenance import set_seed
    from secret_moe.schedule import Schedule
    from secret_moe.settings import DistillSettings
    from secret_moe.steps.distill import _Data
    from secret_moe.students import build_student, parse_student
    from secret_moe.train import TrainConfig, fit_together
    from secret_moe.train_reference import train_reference

    torch.set_num_threads(1)
    spec = VARIANTS[variant]
    distill = DistillSettings(args.batch_size, spec.group_chunks, in_memory=True)
    data = _Data.open(args.train, args.validation, args.layer, distill, seed, "cpu")
    set_seed(seed)  # as steps.distill.train_students: the student starts as the run's would
    student = build_student(parse_student(args.student), data.train.d_model)
    schedule = Schedule(**SCHEDULE)
    tick = time.perf_counter()
    if not spec.fused_adam:
        from secret_moe.students import optim

        optim._fused_ok = lambda params: False  # this worker process only: Adam's for-loop implementation
    if spec.package_path:
        config = TrainConfig(args.epochs, args.lr, f"{variant}_s{seed}")
        (result,) = fit_together([student], data.train, data.val, [config], data.variance, data.split, schedule)
        history = result["history"]
    else:
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in (data.train.x, data.train.y)]
        validation = (torch.from_numpy(data.val.x), torch.from_numpy(data.val.y))
        orders = None
        if variant == "plain_groups":
            orders = [torch.from_numpy(data.train.row_order(e)) for e in range(args.epochs)]
        _, history = train_reference(
            student,
            (tensors[0], tensors[1]),
            validation,
            epochs=args.epochs,
            learning_rate=args.lr,
            variance=data.variance,
            seed=seed,
            schedule=schedule,
            batch_size=args.batch_size,
            orders=orders,
        )
    return {
        "variant": variant,
        "seed": seed,
        "student": args.student,
        "epochs": args.epochs,
        "lr": args.lr,
        "wall_seconds": time.perf_counter() - tick,
        "history": [{key: h[key] for key in ("epoch", "train_mse", "val_mse", "val_fvu")} for h in history],
    }


def rows(out: Path) -> pd.DataFrame:
    """One row per variant, seed and epoch of the runs under `out`."""
    records = []
    for path in sorted((out / "runs").glob("*.json")):
        run = json.loads(path.read_text())
        for h in run["history"]:
            records.append(
                {"variant": run["variant"], "seed": run["seed"], **h, "wall_seconds": round(run["wall_seconds"], 1)}
            )
    return pd.DataFrame(records)


def summarise(out: Path, note: str = "") -> str:
    table = rows(out)
    if table.empty:
        return "no finished runs\n"
    table.to_csv(out / "seed_spread.csv", index=False)
    lines = [f"Machine: {machine()}", ""] + ([note, ""] if note else [])
    lines += [
        "| variant | seeds | best FVU per seed (epoch) | mean | std/mean | (max-min)/mean | wall s per run |",
        "|---|---|---|---|---|---|---|",
    ]
    order = {v: i for i, v in enumerate(VARIANTS)}
    for variant, group in sorted(table.groupby("variant"), key=lambda item: order.get(item[0], 99)):
        best = group.loc[group.groupby("seed").val_fvu.idxmin()].sort_values("seed")
        fvu = best.val_fvu.to_numpy()
        per_seed = ", ".join(f"s{s}: {f:.4f} ({e})" for s, f, e in zip(best.seed, fvu, best.epoch, strict=True))
        std = np.std(fvu, ddof=1) / fvu.mean() if len(fvu) > 1 else float("nan")
        spread = (fvu.max() - fvu.min()) / fvu.mean()
        wall = group.groupby("seed").wall_seconds.first().mean()
        lines.append(
            f"| {variant} | {len(fvu)} | {per_seed} | {fvu.mean():.4f} | {std:.1%} | {spread:.1%} | {wall:.0f} |"
        )
    lines += ["", *_tests(table, order), "", *_paired(table, order)]
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    return text


def _paired(table: pd.DataFrame, order: dict[str, int], ref_name: str = "full_perm") -> list[str]:
    """Each other variant against `full_perm` seed by seed (the same initial weights and row order): the mean
    difference of the best FVUs over the seeds both ran, with a paired t test and a Wilcoxon signed-rank test."""
    from scipy import stats

    best = {v: g.groupby("seed").val_fvu.min() for v, g in table.groupby("variant")}
    if ref_name not in best:
        return []
    lines = [f"| against {ref_name}, same seeds | seeds | mean difference | lower on | paired t p | Wilcoxon p |"]
    lines.append("|---|---|---|---|---|---|")
    for variant in sorted(best, key=lambda v: order.get(v, 99)):
        seeds = best[variant].index.intersection(best[ref_name].index)
        if variant == ref_name or len(seeds) < 3:
            continue
        diff = (best[variant][seeds] - best[ref_name][seeds]).to_numpy()
        lines.append(
            f"| {variant} | {len(seeds)} | {diff.mean():+.4f} | {(diff < 0).sum()} of {len(diff)} | "
            f"{stats.ttest_1samp(diff, 0).pvalue:.3f} | {stats.wilcoxon(diff).pvalue:.3f} |"
        )
    return lines


def _tests(table: pd.DataFrame, order: dict[str, int]) -> list[str]:
    """Each other variant against `package` on the seeds' best FVUs: the variance ratio with a two-sided F test
    (equal variances), Levene's test (robust to non-normal tails) and Welch's t test on the means."""
    from scipy import stats

    best = {v: g.groupby("seed").val_fvu.min().to_numpy() for v, g in table.groupby("variant")}
    if "package" not in best or len(best["package"]) < 2:
        return []
    lines = ["| against package | variance ratio (package / it) | F test p | Levene p | Welch t test p (means) |"]
    lines.append("|---|---|---|---|---|")
    ref = best["package"]
    for variant in sorted(best, key=lambda v: order.get(v, 99)):
        other = best[variant]
        if variant == "package" or len(other) < 2:
            continue
        ratio = np.var(ref, ddof=1) / np.var(other, ddof=1)
        tail = stats.f.sf(ratio, len(ref) - 1, len(other) - 1)
        f_p = 2 * min(tail, 1 - tail)
        levene_p = stats.levene(ref, other).pvalue
        welch_p = stats.ttest_ind(ref, other, equal_var=False).pvalue
        lines.append(f"| {variant} | {ratio:.1f} | {f_p:.3f} | {levene_p:.3f} | {welch_p:.3f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train")
    parser.add_argument("--validation")
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--student", default=STUDENT)
    parser.add_argument("--epochs", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--variants", nargs="+", default=["package", "full_perm", "plain"], choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/seed_spread"))
    parser.add_argument("--summarise", action="store_true", help="only rebuild the CSV and the summary")
    parser.add_argument("--note", default="", help="a line for the summary (e.g. the store)")
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        variant, seed = args.worker[0], int(args.worker[1])
        record = worker(variant, seed, args)
        target = args.out / "runs" / f"{variant}_s{seed}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(record, indent=1))
        return
    if not args.summarise:
        (args.out / "runs").mkdir(parents=True, exist_ok=True)
        for seed in args.seeds:  # seeds outermost: a plan cut short has every variant on the first seeds
            for variant in args.variants:
                if (args.out / "runs" / f"{variant}_s{seed}.json").is_file():
                    continue
                env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
                if not VARIANTS[variant].fused_kernels:
                    env["SECRET_MOE_FUSED"] = "0"
                command = [sys.executable, __file__, "--worker", variant, str(seed)]
                command += ["--train", args.train, "--validation", args.validation, "--layer", str(args.layer)]
                command += ["--student", args.student, "--epochs", str(args.epochs), "--lr", str(args.lr)]
                command += ["--batch-size", str(args.batch_size), "--out", str(args.out)]
                tick = time.perf_counter()
                with open(args.out / "runs" / f"{variant}_s{seed}.log", "w") as log:
                    done = subprocess.run(command, env=env, stdout=log, stderr=log, check=False)
                status = "done" if done.returncode == 0 else f"FAILED ({done.returncode})"
                print(f"{variant} seed {seed}: {status} in {time.perf_counter() - tick:.0f} s", flush=True)
                summarise(args.out, args.note)
    print(summarise(args.out, args.note))


if __name__ == "__main__":
    main()
