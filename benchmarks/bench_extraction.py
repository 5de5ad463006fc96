"""Extraction throughput: the truncated forward (stop after layer ℓ's MLP) vs full forwards, Zarr write share.

On the same length-sorted batches (`extract.plan_windows` / `plan_batches`, as the pipeline builds them):
- `capture.capture_batch` (our truncated forward: a hook raises once layer ℓ's MLP has run);
- the full model forward `model(...)` (all layers and the LM head, what an output_hidden_states
  extraction runs), and the decoder stack alone `model.base_model(...)` (all layers, no LM head).
Then `extract.capture_activations` writes the same tokens to a Zarr store in a temporary folder: the share
of its wall time spent writing chunks, and the padding fraction of its batches.

    python benchmarks/bench_extraction.py \
        --model-dir /tmp/fresh/resources/models/gemma3-270m \
        --tokens /tmp/fresh/results/tokens/gemma3-270m/train.zarr --layer 9
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import machine, save, table


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="/tmp/fresh/resources/models/gemma3-270m")
    parser.add_argument("--tokens", default="/tmp/fresh/results/tokens/gemma3-270m/train.zarr")
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--max-tokens", type=int, default=4000, help="time the first sequences up to this many tokens")
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--window-sequences", type=int, default=256)
    parser.add_argument("--chunk-mb", type=float, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="temporary folder for the Zarr store (default: a new one)")
    return parser.parse_args()


def store_padding(lengths: np.ndarray, args: argparse.Namespace) -> tuple[float, str]:
    """Padding of the batches the pipeline would form over the whole store (planning only, no model run), and a
    summary of the store."""
    from secret_moe.capture import plan_batches, plan_windows

    planned = [
        b
        for w in plan_windows(lengths, args.window_sequences, args.seed)
        for b in plan_batches(w, lengths, args.batch_tokens)
    ]
    padding = 1 - lengths.sum() / sum(len(b) * lengths[b].max() for b in planned)
    return padding, f"{lengths.sum()} tokens, {len(lengths)} sequences, {len(planned)} batches"


def padded_batches(
    sequences: list[np.ndarray], lengths: np.ndarray, pad_id: int, args: argparse.Namespace
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input ids, attention mask) of the pipeline's length-sorted batches, padded on the right, on the device."""
    from secret_moe.capture import plan_batches, plan_windows

    batches = []
    for window in plan_windows(lengths, args.window_sequences, args.seed):
        for batch in plan_batches(window, lengths, args.batch_tokens):
            width = int(lengths[batch].max())
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, index in enumerate(batch):
                ids[row, : lengths[index]] = torch.from_numpy(sequences[index].astype(np.int64))
                mask[row, : lengths[index]] = 1
            batches.append((ids.to(args.device), mask.to(args.device)))
    return batches


def time_forwards(
    model: torch.nn.Module, layer: int, batches: list[tuple[torch.Tensor, torch.Tensor]], device: str
) -> dict[str, float]:
    """Wall seconds of the truncated forward, the full forward and the decoder stack over all batches (after one
    warm-up batch each), in that order."""
    from secret_moe.capture import capture_batch

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    runs = {
        f"truncated (capture_batch, layer {layer})": lambda ids, mask: capture_batch(model, layer, ids, mask),
        "full forward, LM head included (model(...))": lambda ids, mask: model(
            input_ids=ids, attention_mask=mask, use_cache=False
        ),
        "full decoder stack, no LM head (model.base_model(...))": lambda ids, mask: model.base_model(
            input_ids=ids, attention_mask=mask, use_cache=False
        ),
    }
    seconds = {}
    with torch.no_grad():
        for name, fn in runs.items():
            fn(*batches[0])  # warm-up
            sync()
            tick = time.perf_counter()
            for ids, mask in batches:
                fn(ids, mask)
            sync()
            seconds[name] = time.perf_counter() - tick
            print(f"{name}: {seconds[name]:.1f} s", flush=True)
    return seconds


def time_capture(
    model: torch.nn.Module, sequences: list[np.ndarray], pad_id: int, args: argparse.Namespace
) -> tuple[dict[str, float], float]:
    """`capture_activations` of the same sequences into a temporary store: its statistics and wall seconds."""
    from secret_moe.capture import capture_activations

    with tempfile.TemporaryDirectory(dir=args.out) as tmp:
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
            seed=args.seed,
            device=args.device,
            attrs={"bench": True},
        )
        return stats, time.perf_counter() - tick


def main() -> None:
    args = parse_args()

    from secret_moe.models.layers import hidden_size, num_layers
    from secret_moe.models.loading import load_local_model, load_local_tokenizer
    from secret_moe.tokenise import read_token_store

    sequences, _ = read_token_store(args.tokens)
    lengths = np.array([len(s) for s in sequences])
    padding, store_summary = store_padding(lengths, args)
    keep = int(np.searchsorted(np.cumsum(lengths), args.max_tokens)) + 1
    sequences, lengths = sequences[:keep], lengths[:keep]
    tokenizer = load_local_tokenizer(args.model_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model = load_local_model(args.model_dir, args.dtype, args.device)
    layers = num_layers(model.config)
    d_model = hidden_size(model.config)

    batches = padded_batches(sequences, lengths, pad_id, args)
    tokens = int(lengths.sum())
    seconds = time_forwards(model, args.layer, batches, args.device)
    truncated = next(iter(seconds))
    rows = [[name, f"{tokens / s:.0f}", f"{s:.1f}", f"{s / seconds[truncated]:.2f}x"] for name, s in seconds.items()]
    stats, wall = time_capture(model, sequences, pad_id, args)
    rows.append(["capture_activations (truncated forward + Zarr write)", f"{tokens / wall:.0f}", f"{wall:.1f}", "-"])

    full, stack = list(seconds)[1], list(seconds)[2]
    lines = [
        (
            f"Extraction, {Path(args.model_dir).name} layer {args.layer} of {layers} ({args.dtype}, {args.device}), "
            f"{tokens} tokens in {len(sequences)} sequences, "
            f"{len(batches)} batches of <= {args.batch_tokens} padded tokens"
        ),
        f"machine: {machine()}",
        "",
        table(["forward", "tokens/s", "seconds", "time / truncated"], rows),
        "",
        (
            f"speed-up of the truncated forward: {seconds[full] / seconds[truncated]:.2f}x vs the full forward, "
            f"{seconds[stack] / seconds[truncated]:.2f}x vs the decoder stack alone"
        ),
        (
            f"Zarr write share of capture_activations: {stats['write_seconds']:.2f} s of {wall:.1f} s = "
            f"{100 * stats['write_seconds'] / wall:.1f}% (model + batching {stats['model_seconds']:.1f} s)"
        ),
        (
            f"Zarr write throughput: {2 * tokens * d_model * 4 / 2**20 / max(stats['write_seconds'], 1e-9):.0f} MiB/s "
            f"(x and y, float32, lz4)"
        ),
        (
            f"padding fraction with length-sorted batching: {100 * padding:.2f}% over the whole token store "
            f"({store_summary}); {100 * stats['padding_fraction']:.2f}% in the timed subset"
        ),
    ]
    save("bench_extraction", "\n".join(lines))


if __name__ == "__main__":
    main()
