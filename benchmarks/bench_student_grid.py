"""The distillation grid two ways, side by side: one process per run vs bundles of runs in one process.

Trains the default config's students for one store (config.yaml: the first model's first layer, its
learning rates, the first seed) for --epochs epochs, on 2 cores both ways:

- `per run`: what one run cost before bundling: a fresh Python process per run that imports snakemake
  (as Snakemake's script wrapper does), opens and reads the stores, computes the output variance, trains
  and evaluates its one student and saves it; two such processes at a time (`snakemake --cores 2`).
- `bundled`: `rules/distill.smk` as it is now: the same runs split into two bundles of the same make-up
  (two processes at a time, as Snakemake runs the real and Gaussian bundles), each training its students
  together on the same batches.

Both call `secret_moe.steps.train_students`, with one thread per process. It prints student-epochs per
core-second for both and checks that every run's validation FVU history is identical between the two (it
must be: a bundled student sees exactly the batches and updates it sees alone).

By default the store is a synthetic one shaped like the default's (--rows x d_model 640, y from a random
GELU MLP of x); --train and --validation point at real stores instead, e.g.

    python benchmarks/bench_student_grid.py --epochs 2
    python benchmarks/bench_student_grid.py --train results/activations/gemma3-270m/layer9/train.zarr \\
        --validation results/activations/gemma3-270m/layer9/validation.zarr
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, save, table

REPO = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    import snakemake  # noqa: F401 - Snakemake's script wrapper imports it in every job

    from secret_moe.steps import train_students

    runs = json.loads(Path(args.runs).read_text())
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


def synthetic_stores(folder: Path, rows: int, d_model: int) -> tuple[str, str]:
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
            partial_path(path), n, d_model, chunk_rows_for(d_model, 2), {"layer": 0, "model_id": "synthetic"}
        )
        x = np.random.default_rng(len(paths)).standard_normal((n, d_model), dtype=np.float32)
        with torch.no_grad():
            y = teacher(torch.from_numpy(x)).numpy()
        group["x"][:], group["y"][:] = x, y
        commit_rows(partial_path(path), n)
        finish_store(partial_path(path), path)
        paths.append(str(path))
    return paths[0], paths[1]


def run_all(jobs: list[list[str]], parallel: int) -> float:
    """Run the commands `parallel` at a time; wall seconds for all of them."""
    tick, pending, running = time.perf_counter(), list(jobs), []
    while pending or running:
        while pending and len(running) < parallel:
            running.append(subprocess.Popen(pending.pop(0), cwd=REPO))
        running[0].wait()
        if running[0].returncode:
            raise SystemExit(f"worker failed: {running[0].args}")
        running = [p for p in running if p.poll() is None]
    return time.perf_counter() - tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--runs", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--distill", help=argparse.SUPPRESS)
    parser.add_argument("--train", default=None, help="a train activation store (default: synthetic)")
    parser.add_argument("--validation", default=None, help="its validation store")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the synthetic train store")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from secret_moe.plan import all_students
    from secret_moe.provenance import read_json
    from secret_moe.restore import load_config

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
            "epochs": args.epochs,
            "lr": lr,
            "seed": config["distill"]["seeds"][0],
        }
        for student in all_students(config, model, layer)
        for lr in config["distill"]["learning_rates"]
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train, validation = (args.train, args.validation) if args.train else synthetic_stores(tmp, args.rows, 640)

        def command(members: list[dict], out: Path) -> list[str]:
            spec = tmp / f"{out.name}.json"
            spec.write_text(json.dumps(members))
            return [
                sys.executable,
                __file__,
                "--worker",
                "--runs",
                str(spec),
                "--out",
                str(out),
                "--train",
                train,
                "--validation",
                validation,
                "--distill",
                json.dumps(distill),
            ]

        single = [command([run], tmp / f"single{i}") for i, run in enumerate(runs)]
        # two bundles of the same make-up, as the default's real and Gaussian bundles are
        bundles = [command(runs[0::2], tmp / "bundle0"), command(runs[1::2], tmp / "bundle1")]
        wall = {"per run": run_all(single, 2), "bundled": run_all(bundles, 2)}

        def history(out: Path, run: dict) -> list:
            return read_json(out / f"{run['student']}_lr{run['lr']}" / "metrics.json")["history"]

        same = [history(tmp / f"single{i}", run) == history(tmp / f"bundle{i % 2}", run) for i, run in enumerate(runs)]
    student_epochs = len(runs) * args.epochs
    rows = [
        [path, len(runs), args.epochs, f"{seconds:.1f}", f"{student_epochs / (2 * seconds):.3f}"]
        for path, seconds in wall.items()
    ]
    store = f"store {train}" if args.train else f"a synthetic store of {args.rows} rows"
    text = "\n".join(
        [
            f"Distillation grid of config.yaml ({model} layer {layer}, {len(runs)} runs: "
            f"every student x learning rate, one seed) on {store}, "
            f"{args.epochs} epochs, 2 processes at a time, 1 torch thread each",
            f"machine: {machine()}",
            "",
            table(["path", "runs", "epochs", "wall s", "student-epochs per core-second"], rows),
            "",
            f"bundled / per run: {wall['per run'] / wall['bundled']:.2f}x",
            f"validation FVU histories identical in {sum(same)} of {len(same)} runs",
        ]
    )
    save(f"bench_student_grid_e{args.epochs}", text)
    if not all(same):
        raise SystemExit("the two paths disagree")


if __name__ == "__main__":
    main()
