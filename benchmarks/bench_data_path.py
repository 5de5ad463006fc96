"""Data path vs training: rows/s that `ActivationBatches` delivers against rows/s a training step consumes.

The reader walks one epoch of a Zarr activation store with chunk-level shuffling on (as training does),
with `in_memory` False (decompress chunks on every epoch) and True (read once, then slice; the one-off
load is reported separately).  The students are the default ones at d = 640, trained as the pipeline
does (batch 1024, `make_optimizer`, `distill.threads` torch threads).  Target: reader >= 10x step.

By default the store is a synthetic one of --rows random rows written with the pipeline's store layout
(chunks of `extract.chunk_mb` = 2 MiB, lz4); --store points at a real one instead.

    python benchmarks/bench_data_path.py
    python benchmarks/bench_data_path.py --store results/activations/gemma3-270m/layer9/real/train.zarr
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import machine, save, table


def make_store(path: Path, rows: int, d_model: int, chunk_mb: float) -> None:
    import numpy as np

    from secret_moe.store import chunk_rows_for, create_store

    chunk_rows = chunk_rows_for(d_model, chunk_mb)
    group = create_store(path, rows, d_model, chunk_rows, {"bench": True})
    rng = np.random.default_rng(0)
    block = chunk_rows * 16
    for start in range(0, rows, block):
        n = min(block, rows - start)
        group["x"][start : start + n] = rng.standard_normal((n, d_model), dtype=np.float32)
        group["y"][start : start + n] = rng.standard_normal((n, d_model), dtype=np.float32) * 0.1


def reader_rate(group, batch_size: int, in_memory: bool, group_chunks: int, epochs: int) -> tuple[float, float]:
    from secret_moe.batches import ActivationBatches

    tick = time.perf_counter()
    batches = ActivationBatches(
        group, batch_size, shuffle=True, seed=0, group_chunks=group_chunks, in_memory=in_memory, device="cpu"
    )
    setup = time.perf_counter() - tick
    rows = 0
    tick = time.perf_counter()
    for epoch in range(epochs):
        for x, _ in batches.epoch(epoch):
            rows += len(x)
    return rows / (time.perf_counter() - tick), setup


def training_step(
    name: str, d_model: int, batch_size: int, device: str = "cpu", precision: str = "float32"
) -> Callable[[], None]:
    """One training step as distillation takes it (`train._train_step`: zero_grad, forward, MSE, backward,
    Adam, under `distill.precision`'s autocast) of a fresh student on a fixed random batch."""
    import torch

    from secret_moe.precision import MixedPrecision
    from secret_moe.students import build_student, parse_student
    from secret_moe.students.optim import make_optimizer
    from secret_moe.train import _train_step

    torch.manual_seed(0)
    student = build_student(parse_student(name), d_model).to(device)
    optimizer = make_optimizer(student, 1e-3)
    x, y = torch.randn(batch_size, d_model, device=device), torch.randn(batch_size, d_model, device=device)
    amp = MixedPrecision.of(precision, device)

    def step() -> None:
        _train_step(student, optimizer, x, y, amp)

    return step


def step_rate(
    name: str, d_model: int, batch_size: int, steps: int, device: str = "cpu", precision: str = "float32"
) -> float:
    """Samples per second of `training_step`, over `steps` steps after one untimed warm-up."""
    import torch

    from secret_moe.memory import keep_freed_memory

    keep_freed_memory()  # as the distillation jobs do
    step = training_step(name, d_model, batch_size, device, precision)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    step()
    sync()
    tick = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * batch_size / (time.perf_counter() - tick)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", default=None, help="an existing activation store (default: synthetic)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the synthetic store")
    parser.add_argument("--d-model", type=int, default=640)
    parser.add_argument("--chunk-mb", type=float, default=2)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--group-chunks", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (config distill.threads)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--students",
        nargs="+",
        default=["moe_lowrank_r128_m1024_s32_k32", "mlp_h128"],
        help="default: the largest MoE and MLP students of the default config",
    )
    args = parser.parse_args()

    import torch
    import zarr

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if args.store:
            path = Path(args.store)
        else:
            path = Path(tmp) / "synthetic.zarr"
            make_store(path, args.rows, args.d_model, args.chunk_mb)
        group = zarr.open_group(str(path), mode="r")
        rows, d_model = group["x"].shape
        chunk_rows = group["x"].chunks[0]
        readers = {
            f"in_memory={mode}": reader_rate(group, args.batch_size, mode, args.group_chunks, args.epochs)
            for mode in (False, True)
        }
    steps = {name: step_rate(name, d_model, args.batch_size, args.steps) for name in args.students}

    out = []
    for reader, (rate, setup) in readers.items():
        for name, step in steps.items():
            out.append([reader, f"{rate:.0f}", f"{setup:.2f}", name, f"{step:.0f}", f"{rate / step:.1f}x"])
    text = "\n".join(
        [
            (
                f"Data path: ActivationBatches (chunk-shuffled, group_chunks {args.group_chunks}, "
                f"batch {args.batch_size}) vs training steps, "
                f"{'store ' + str(args.store) if args.store else 'synthetic store'} of {rows} rows x "
                f"{d_model}, chunks of {chunk_rows} rows, {args.threads} torch thread(s)"
            ),
            f"machine: {machine()}",
            "",
            table(["reader", "reader rows/s", "setup s", "student", "train step rows/s", "reader / step"], out),
        ]
    )
    save("bench_data_path", text)


if __name__ == "__main__":
    main()
