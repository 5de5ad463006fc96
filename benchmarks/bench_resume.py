"""A killed training job resumed from its checkpoint, against the same job uninterrupted: where it was killed, the
time the resume saves against a restart from zero, the bytes, and each checkpoint's size and write time.

One bundle like the default config's (MLPs of 32, 64 and 128 neurons and the MoE m = 1024, s = k = 32 with a rank-128
router, learning rate 3e-3, the wsd ladder of 3 rungs), trained through the package's own step
(`steps.distill.train_students`) in fresh processes on a store written with the package's store writer (Gaussian
inputs, a random GELU MLP's outputs; the sizes below): once uninterrupted without a checkpoint (the job as it was
before checkpoints), once with a checkpoint after every epoch, killed with SIGKILL once its checkpoint after
`--kill-after` epochs is written, then run again to its end.

    python benchmarks/bench_resume.py --rows 20000 --d-model 640 --epochs 32 --kill-after 17
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine, save, table
from secret_moe.schedule import Schedule
from secret_moe.store import chunk_rows_for
from secret_moe.testing import kill_after_checkpoint, start_training, write_mlp_store

STUDENTS = ["mlp_h32", "mlp_h64", "mlp_h128", "moe_lowrank_r128_m1024_s32_k32"]
SCHEDULE = {"kind": "wsd", "warmup_epochs": 1, "cooldown_fraction": 0.2, "rungs": 3}  # config.yaml's
WRITTEN = re.compile(r"checkpoint after (\d+) epochs written \(([\d.]+) MiB in ([\d.]+) s\)")


def arguments(stores: list[Path], out: Path, epochs: int, checkpoint: Path | None) -> dict[str, Any]:
    runs = [
        {"model": "bench", "layer": 1, "data": "activations", "student": s, "epochs": epochs, "lr": 3e-3, "seed": 0}
        for s in STUDENTS
    ]
    distill = {"batch_size": 1024, "group_chunks": 8, "in_memory": True, "schedule": SCHEDULE}
    return {
        "train_store": str(stores[0]),
        "val_store": str(stores[1]),
        "bundle_dir": str(out),
        "runs": runs,
        "distill": distill,
        "seed": 0,
        "device": "cpu",
        "threads": 1,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "checkpoint_minutes": 0,
    }


def timed(args: dict[str, Any], log: Path) -> float:
    tick = time.perf_counter()
    process = start_training(args, log)
    if process.wait() != 0:
        raise RuntimeError(f"training failed: {log.read_text()[-2000:]}")
    return time.perf_counter() - tick


def same_bytes(first: Path, second: Path) -> tuple[int, bool]:
    """How many files (metrics.json, student.safetensors) the two bundle folders hold, and whether all are equal."""
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.name != "timing.json" and p.is_file())
    return len(files), all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000, help="training rows (validation: a quarter)")
    parser.add_argument("--d-model", type=int, default=640)
    parser.add_argument("--epochs", type=int, default=32, help="the ladder's longest rung")
    parser.add_argument("--kill-after", type=int, default=17, help="epochs trained (trunk and branches) at the kill")
    parser.add_argument("--name", default="bench_resume", help="results file: benchmarks/results/NAME.txt")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        chunk = chunk_rows_for(args.d_model, 2)  # capture.chunk_mb's default
        stores = [
            write_mlp_store(root / f"{split}.zarr", rows, args.d_model, chunk, seed)
            for split, rows, seed in (("train", args.rows, 0), ("validation", args.rows // 4, 1))
        ]
        # the uninterrupted run before and after the killed one and its rerun: other work on the machine shows as
        # the difference between the two
        whole = [timed(arguments(stores, root / "whole", args.epochs, None), root / "whole.log")]
        log, checkpoint = root / "resumed.log", root / "bundle.pt"
        tick = time.perf_counter()
        kill_after_checkpoint(
            start_training(arguments(stores, root / "resumed", args.epochs, checkpoint), log), log, args.kill_after
        )
        killed = time.perf_counter() - tick
        resumed = timed(arguments(stores, root / "resumed", args.epochs, checkpoint), log)
        whole.append(timed(arguments(stores, root / "again", args.epochs, None), root / "again.log"))
        files, identical = same_bytes(root / "whole", root / "resumed")
        report(args, whole, killed, resumed, log.read_text(), (files, identical), not checkpoint.exists())


def report(
    args: argparse.Namespace,
    runs: list[float],
    killed: float,
    resumed: float,
    log: str,
    compared: tuple[int, bool],
    removed: bool,
) -> None:
    footprint = Schedule(**SCHEDULE).footprint(args.epochs)
    whole = statistics.mean(runs)
    writes = [(int(n), float(mb), float(s)) for n, mb, s in WRITTEN.findall(log)]
    where = re.search(r"resumed from epoch .*", log)
    trained = re.findall(r"(\d+) epochs trained in this process", log)
    sizes, seconds = [w[1] for w in writes], [w[2] for w in writes]
    rows = [
        ["uninterrupted, no checkpoint (before, after)", " / ".join(f"{r:.1f}" for r in runs), footprint],
        [f"checkpoint every epoch, killed after {args.kill_after} epochs", f"{killed:.1f}", args.kill_after],
        ["rerun: resumed from the checkpoint", f"{resumed:.1f}", trained[-1] if trained else "?"],
    ]
    text = "\n".join(
        [
            f"Kill and resume of one bundle ({', '.join(STUDENTS)}; wsd ladder {SCHEDULE}, {args.epochs} epochs: "
            f"{footprint} epochs of training), {args.rows} x {args.d_model} training rows; {machine()}",
            table(["process", "wall s", "epochs trained"], rows),
            f"where the kill landed (the rerun's log): {where.group(0) if where else 'not resumed'}",
            f"time saved by resuming instead of restarting from zero (the uninterrupted run, mean of both): "
            f"{whole - resumed:.1f} s ({(whole - resumed) / whole:.0%} of it); killed run and rerun together: "
            f"{killed + resumed:.1f} s against {whole:.1f} s uninterrupted",
            f"metrics.json and student.safetensors, resumed vs uninterrupted: {compared[0]} files, "
            f"{'all byte-identical' if compared[1] else 'DIFFERENT'}; checkpoint deleted at the end: {removed}",
            f"checkpoints written: {len(writes)}, size {min(sizes):.1f}-{max(sizes):.1f} MiB (median "
            f"{statistics.median(sizes):.1f}), write time median {statistics.median(seconds):.2f} s, max "
            f"{max(seconds):.2f} s; all writes {sum(seconds):.1f} s of {killed + resumed:.1f} s",
        ]
    )
    save(args.name, text)


if __name__ == "__main__":
    main()
