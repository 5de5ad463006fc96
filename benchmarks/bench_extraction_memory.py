"""Extraction memory does not grow with the corpus: peak RSS of `capture_activations` on N and 2N tokens.

Each run is a fresh process (so getrusage maxrss is its own) that loads the model, takes the first
sequences up to N (or 2N) tokens of the token store and writes their activations to a temporary Zarr
store.  Loading the weights briefly needs more memory than capture does, so the worker resets the kernel's
peak-RSS mark (`/proc/self/clear_refs`, Linux) once the model is loaded and reports VmHWM after capture:
the peak RSS during capture, and that peak above the RSS just before capture started (model loaded).
N should exceed one window (`--window-sequences` sequences, ~12.6k tokens at 256 on the default corpus).
The default layer is 0: what is held in memory (one window of (x, y) rows, one chunk) does not depend on
the layer, and stopping after layer 0 keeps the run short on a CPU.

    python benchmarks/bench_extraction_memory.py               # N = 30000 tokens vs 2N
    python benchmarks/bench_extraction_memory.py --tokens-n 15000
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

from _common import machine, maxrss_mib, run_worker, save, table


def worker(args: argparse.Namespace) -> None:
    import numpy as np

    from secret_moe.capture import capture_activations
    from secret_moe.models.loading import load_local_model, load_local_tokenizer
    from secret_moe.tokenise import read_token_store

    sequences, _ = read_token_store(args.tokens)
    lengths = np.array([len(s) for s in sequences])
    keep = int(np.searchsorted(np.cumsum(lengths), args.n)) + 1
    sequences = sequences[:keep]
    tokenizer = load_local_tokenizer(args.model_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model = load_local_model(args.model_dir, "float32", "cpu")
    gc.collect()
    # loading the weights peaks above what capture needs: reset the kernel's peak-RSS mark (VmHWM) first
    reset = reset_peak_rss()
    before = status_mib("VmRSS")
    with tempfile.TemporaryDirectory() as tmp:
        tick = time.perf_counter()
        stats = capture_activations(
            model,
            sequences,
            Path(tmp) / "bench.zarr",
            layer=args.layer,
            pad_id=pad_id,
            batch_tokens=args.batch_tokens,
            window_sequences=args.window_sequences,
            chunk_mb=args.chunk_mb,
            seed=0,
            device="cpu",
            attrs={"bench": True},
        )
        seconds = time.perf_counter() - tick
    peak = status_mib("VmHWM") if reset else maxrss_mib()
    print(
        json.dumps(
            {
                "tokens": stats["tokens"],
                "sequences": len(sequences),
                "peak_mib": peak,
                "before_mib": before,
                "seconds": seconds,
                "reset": reset,
            }
        )
    )


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="/tmp/fresh/resources/models/gemma3-270m")
    parser.add_argument("--tokens", default="/tmp/fresh/results/tokens/gemma3-270m/train.zarr")
    parser.add_argument("--layer", type=int, default=0)
    parser.add_argument("--tokens-n", type=int, default=30000, help="N; the second run uses 2N tokens")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--window-sequences", type=int, default=256)
    parser.add_argument("--chunk-mb", type=float, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args()


def worker_arguments(args: argparse.Namespace) -> list[str]:
    """The options a worker needs besides its N."""
    return [
        "--model-dir",
        args.model_dir,
        "--tokens",
        args.tokens,
        "--layer",
        str(args.layer),
        "--batch-tokens",
        str(args.batch_tokens),
        "--window-sequences",
        str(args.window_sequences),
        "--chunk-mb",
        str(args.chunk_mb),
    ]


def table_rows(results: list[dict]) -> list[list]:
    return [
        [
            f"{r['tokens']:.0f}",
            r["sequences"],
            f"{r['seconds']:.1f}",
            f"{r['peak_mib']:.0f}",
            f"{r['peak_mib'] - r['before_mib']:.0f}",
        ]
        for r in results
    ]


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    common = worker_arguments(args)
    results = [run_worker(__file__, [*common, "--n", str(n)]) for n in (args.tokens_n, 2 * args.tokens_n)]
    for r in results:
        if "error" in r:
            raise SystemExit(f"worker failed: {r['error']}")
    rows = table_rows(results)
    small, large = results
    change = 100 * (large["peak_mib"] / small["peak_mib"] - 1)
    change_above = 100 * ((large["peak_mib"] - large["before_mib"]) / (small["peak_mib"] - small["before_mib"]) - 1)
    text = "\n".join(
        [
            (
                f"Extraction peak RSS vs corpus size ({Path(args.model_dir).name}, layer {args.layer}, window "
                f"{args.window_sequences} sequences, chunk {args.chunk_mb} MiB, one process per run)"
            ),
            f"machine: {machine()}",
            "",
            table(
                ["tokens", "sequences", "seconds", "peak RSS during capture MiB", "peak above model-loaded RSS MiB"],
                rows,
            ),
            "",
            f"doubling the corpus changes peak RSS by {change:+.1f}% "
            f"(the part above the loaded model by {change_above:+.1f}%)",
        ]
    )
    save("bench_extraction_memory", text)


if __name__ == "__main__":
    main()
