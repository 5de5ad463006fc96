"""The distillation grid, side by side: the present path (one process per run) against bundles.

Trains the default config's students for one store (config.yaml: the first model's first layer, its
learning rates, the first seed) for --epochs epochs, on 2 cores, three ways:

- `per run, <rev>`: the present path as it was before bundling: the package's code at --present-rev
  (default 2a4e503, the last commit that trained one run per Snakemake job), taken from git, one fresh
  Python process per run that imports snakemake (as Snakemake's script wrapper does), opens and reads the
  stores, computes the output variance, trains and evaluates its one student and saves it; two such
  processes at a time (`snakemake --cores 2`).
- `per run, this code`: the same, with this checkout's code (a bundle of one run): what bundling alone saves.
- `bundled, this code`: `rules/distill.smk` as it is now: the same runs split into two bundles of the same
  make-up (two processes at a time, as Snakemake runs the real and Gaussian bundles), each training its
  students together on the same batches.

Every process uses one torch thread.  It prints student-epochs per core-second for each path and checks
that bundled students see exactly the batches and updates they see alone (the same weights, bit for bit,
in both paths of this code).  Against the present code the MoE students' weights differ in the last bits
where this code's MoE step runs on the fused CPU kernels (`students/fused.py`: sums in another order), so
there the check is that every run's validation FVU history agrees to a relative 5e-2 (1e-12, and the same
weights, with `SECRET_MOE_FUSED=0`, which selects today's PyTorch path and computes what the present code
did, bit for bit at the default's widths: `tests/students/test_fast_equivalence.py`).

By default the store is a synthetic one shaped like the default's (--rows x d_model 640, y from a random
GELU MLP of x); --train and --validation point at real stores instead, e.g.

    python benchmarks/bench_student_grid.py --epochs 2
    python benchmarks/bench_student_grid.py --train results/activations/gemma3-270m/layer9/train.zarr \\
        --validation results/activations/gemma3-270m/layer9/validation.zarr
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import machine, save, table

REPO = Path(__file__).resolve().parents[1]
FVU_TOLERANCE = 1e-12
# this code on the fused kernels vs the present code: float32 rounding differences that top-k routing amplifies
# (a selection flips, and the runs drift apart); measured 9.5e-3 at 2 epochs on the default store
FUSED_FVU_TOLERANCE = 5e-2


def worker(args: argparse.Namespace) -> None:
    import snakemake  # noqa: F401 - Snakemake's script wrapper imports it in every job

    runs = json.loads(Path(args.runs).read_text())
    if args.worker == "present":  # the code at --present-rev: one run, its own API
        from secret_moe.steps import train_student

        (run,) = runs
        Path(args.out).mkdir(parents=True)
        metrics, weights = json.loads(args.files)  # layout.RUN_FILES: that code has no layout module
        train_student(
            args.train,
            args.validation,
            f"{args.out}/{metrics}",
            f"{args.out}/{weights}",
            run={key: value for key, value in run.items() if key != "epochs"},
            distill={**json.loads(args.distill), "epochs": run["epochs"]},
            seed=0,
            device="cpu",
            threads=1,
        )
        return
    from secret_moe.steps.distill import train_students

    train_students(
        args.train,
        args.validation,
        args.out,
        runs=runs,
        distill=json.loads(args.distill),
        seed=0,
        device="cpu",
        threads=1,
    )


def synthetic_stores(folder: Path, rows: int, d_model: int, layer: int) -> tuple[str, str]:
    import numpy as np
    import torch

    from secret_moe.store import chunk_rows_for, commit_rows, create_store, finish_store, partial_path

    torch.manual_seed(0)
    teacher = torch.nn.Sequential(
        torch.nn.Linear(d_model, 4 * d_model), torch.nn.GELU(), torch.nn.Linear(4 * d_model, d_model)
    )
    paths = []
    for split, n in (("train", rows), ("validation", rows // 8)):
        path = folder / f"{split}.zarr"
        group = create_store(
            partial_path(path), n, d_model, chunk_rows_for(d_model, 2), {"layer": layer, "model_id": "synthetic"}
        )
        x = np.random.default_rng(len(paths)).standard_normal((n, d_model), dtype=np.float32)
        with torch.no_grad():
            y = teacher(torch.from_numpy(x)).numpy()
        group["x"][:], group["y"][:] = x, y
        commit_rows(partial_path(path), n)
        finish_store(partial_path(path), path)
        paths.append(str(path))
    return paths[0], paths[1]


def present_code(rev: str, folder: Path) -> Path:
    """The package's source at `rev`, from git, in `folder`; the PYTHONPATH that imports it."""
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=REPO, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def run_all(jobs: list[list[str]], parallel: int, env: dict[str, str] | None = None) -> float:
    """Run the commands `parallel` at a time; wall seconds for all of them."""
    tick, pending, running = time.perf_counter(), list(jobs), []
    while pending or running:
        while pending and len(running) < parallel:
            running.append(subprocess.Popen(pending.pop(0), cwd=REPO, env=env))
        running[0].wait()
        if running[0].returncode:
            raise SystemExit(f"worker failed: {running[0].args}")
        running = [p for p in running if p.poll() is None]
    return time.perf_counter() - tick


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=["present", "bundle"], help=argparse.SUPPRESS)
    parser.add_argument("--runs", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--distill", help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--train", default=None, help="a train activation store (default: synthetic)")
    parser.add_argument("--validation", default=None, help="its validation store")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the synthetic train store")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--present-rev", default="2a4e503", help="the commit whose code is the present path")
    return parser.parse_args()


@dataclass
class Grid:
    """The runs of one store of config.yaml (every student x learning rate, the first seed) and their settings."""

    model: str
    layer: int
    distill: dict[str, Any]
    runs: list[dict[str, Any]]


@dataclass
class Outcome:
    """What the three paths did: wall seconds per path, each run's folder in every path, and how they agree."""

    wall: dict[str, float]
    folders: list[tuple[Path, Path, Path]]
    spread: float  # largest relative difference of the validation FVU histories
    bundled_same: list[bool]  # this code's weights alone and bundled, per run
    identical: list[bool]  # the weights of all three paths, per run


def default_grid(epochs: int) -> Grid:
    from secret_moe.config import load_config
    from secret_moe.plan import all_students

    config = load_config(REPO / "config.yaml")
    model = next(iter(config["models"]))
    layer = config["models"][model]["layers"][0]
    distill = {key: config["distill"][key] for key in ("batch_size", "group_chunks", "in_memory")}
    runs = [
        {
            "model": model,
            "layer": layer,
            "data": "activations",
            "student": student,
            "epochs": epochs,
            "lr": lr,
            "seed": config["distill"]["seeds"][0],
        }
        for student in all_students(config, model, layer)
        for lr in config["distill"]["learning_rates"]
    ]
    return Grid(model, layer, distill, runs)


def worker_command(
    tmp: Path, members: list[dict], out: Path, stores: tuple[str, str], distill: dict, worker: str = "bundle"
) -> list[str]:
    """This script as a worker training `members` into `out` (its run list written to a file in `tmp`)."""
    from secret_moe.layout import RUN_FILES

    spec = tmp / f"{out.name}.json"
    spec.write_text(json.dumps(members))
    return [
        sys.executable,
        __file__,
        "--worker",
        worker,
        "--runs",
        str(spec),
        "--out",
        str(out),
        "--train",
        stores[0],
        "--validation",
        stores[1],
        "--distill",
        json.dumps(distill),
        "--files",
        json.dumps(RUN_FILES),
    ]


def time_paths(grid: Grid, tmp: Path, stores: tuple[str, str], present_rev: str) -> dict[str, float]:
    """Train the grid the three ways, two processes at a time; wall seconds per path."""
    present_env = {**os.environ, "PYTHONPATH": str(present_code(present_rev, tmp))}
    runs, distill = grid.runs, grid.distill
    present = [
        worker_command(tmp, [run], tmp / f"present{i}", stores, distill, "present") for i, run in enumerate(runs)
    ]
    single = [worker_command(tmp, [run], tmp / f"single{i}", stores, distill) for i, run in enumerate(runs)]
    # two bundles of the same make-up, as the default's real and Gaussian bundles are
    bundles = [
        worker_command(tmp, runs[0::2], tmp / "bundle0", stores, distill),
        worker_command(tmp, runs[1::2], tmp / "bundle1", stores, distill),
    ]
    paths = (f"per run, {present_rev}", "per run, this code", "bundled, this code")
    return {
        paths[0]: run_all(present, 2, present_env),
        paths[1]: run_all(single, 2),
        paths[2]: run_all(bundles, 2),
    }


def compare_paths(runs: list[dict[str, Any]], tmp: Path, wall: dict[str, float]) -> Outcome:
    """How the three paths' trained runs agree: validation FVU histories and weights."""
    from safetensors.torch import load_file

    from secret_moe.layout import RUN_FILES, member_dir
    from secret_moe.provenance import read_json

    # each run's folder in the three paths
    folders = [
        (tmp / f"present{i}", member_dir(tmp / f"single{i}", run), member_dir(tmp / f"bundle{i % 2}", run))
        for i, run in enumerate(runs)
    ]

    def fvus(folder: Path) -> list[float]:
        return [record["val_fvu"] for record in read_json(folder / RUN_FILES[0])["history"]]

    def same_weights(*folders: Path) -> bool:
        first, *others = [load_file(folder / RUN_FILES[1]) for folder in folders]
        return all(
            first.keys() == other.keys() and all(first[key].equal(other[key]) for key in first) for other in others
        )

    histories = [[fvus(folder) for folder in three] for three in folders]
    spread = max(abs(x - y) / y for a, b, c in histories for x, y in zip(a + b + c, a * 3, strict=True))
    bundled_same = [same_weights(*three[1:]) for three in folders]  # this code: alone and bundled
    identical = [same_weights(*three) for three in folders]
    return Outcome(wall, folders, spread, bundled_same, identical)


def bundle_timing(grid: Grid, outcome: Outcome, epochs: int) -> tuple[float, str]:
    """Where the bundled path's time goes: each student's own steps and evaluations (timing.json), as a share of
    the bundles' core time, and ms per batch per student."""
    from secret_moe.layout import RUN_FILES, TIMING_FILE
    from secret_moe.provenance import read_json

    own: dict[str, list[float]] = {}
    for run, (_, _, bundled) in zip(grid.runs, outcome.folders, strict=True):
        own.setdefault(run["student"], []).append(read_json(bundled / TIMING_FILE)["wall_seconds"])
    train_rows = read_json(outcome.folders[0][2] / RUN_FILES[0])["train_rows"]
    steps = epochs * math.ceil(train_rows / grid.distill["batch_size"])
    own_share = sum(map(sum, own.values())) / (2 * list(outcome.wall.values())[2])
    per_step = ", ".join(f"{student} {1e3 * sum(s) / len(s) / steps:.1f}" for student, s in own.items())
    return own_share, per_step


def report(
    args: argparse.Namespace, grid: Grid, outcome: Outcome, fused_on: bool, own_share: float, per_step: str
) -> str:
    wall, present_rev = outcome.wall, args.present_rev
    paths = list(wall)
    student_epochs = len(grid.runs) * args.epochs
    rows = [
        [path, len(grid.runs), args.epochs, f"{seconds:.1f}", f"{student_epochs / (2 * seconds):.3f}"]
        for path, seconds in wall.items()
    ]
    store = f"store {args.train}" if args.train else f"a synthetic store of {args.rows} rows"
    tolerance = FUSED_FVU_TOLERANCE if fused_on else FVU_TOLERANCE
    identical, bundled_same = outcome.identical, outcome.bundled_same
    return "\n".join(
        [
            f"Distillation grid of config.yaml ({grid.model} layer {grid.layer}, {len(grid.runs)} runs: "
            f"every student x learning rate, one seed) on {store}, "
            f"{args.epochs} epochs, 2 processes at a time, 1 torch thread each",
            f"machine: {machine()}",
            "",
            table(["path", "runs", "epochs", "wall s", "student-epochs per core-second"], rows),
            "",
            f"bundled, this code / per run, {present_rev}: {wall[paths[0]] / wall[paths[2]]:.2f}x "
            f"(bundling alone, this code: {wall[paths[1]] / wall[paths[2]]:.2f}x; "
            f"this code per run / {present_rev} per run: {wall[paths[0]] / wall[paths[1]]:.2f}x)",
            f"bundled: the students' own steps and evaluations take {own_share:.0%} of the bundles' core time; "
            f"ms per batch (mean over learning rates): {per_step}",
            f"this code's MoE step: {'fused CPU kernels' if fused_on else 'PyTorch path'}",
            f"trained weights identical, bit for bit, in all three paths in {sum(identical)} of {len(identical)} runs; "
            f"in this code's two paths in {sum(bundled_same)} of {len(bundled_same)}",
            f"validation FVU histories: largest relative difference between the paths {outcome.spread:.1e} "
            f"(tolerance {tolerance:.0e}: "
            + (
                "the fused kernels sum in another order than the present code's PyTorch kernels)"
                if fused_on
                else "the float64 sum of the squared validation errors is accumulated in a different "
                "order: per batch in the present code, per row and then per row kind in this code)"
            ),
        ]
    )


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    from secret_moe.students import fused

    grid = default_grid(args.epochs)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if args.train:
            stores = (args.train, args.validation)
        else:
            stores = synthetic_stores(tmp, args.rows, 640, grid.layer)
        wall = time_paths(grid, tmp, stores, args.present_rev)
        outcome = compare_paths(grid.runs, tmp, wall)
        own_share, per_step = bundle_timing(grid, outcome, args.epochs)
    fused_on = fused.ENABLED and fused.library() is not None
    tolerance = FUSED_FVU_TOLERANCE if fused_on else FVU_TOLERANCE
    save(f"bench_student_grid_e{args.epochs}", report(args, grid, outcome, fused_on, own_share, per_step))
    if not all(outcome.bundled_same) or (not fused_on and not all(outcome.identical)) or outcome.spread > tolerance:
        raise SystemExit("the paths disagree")


if __name__ == "__main__":
    main()
