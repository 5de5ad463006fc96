"""One forward pass for every layer (`capture.capture_layers`) vs one pass per layer (`capture.capture_activations`,
as capture_activations jobs run), side by side on the same tokens, Zarr writes included.

Each pass writes its stores to a temporary folder; the per-layer passes run first, then the one pass, `--repeats`
times in turn (the best time of each is kept, as other work on the machine only slows runs down). The stores of
the two ways are compared file by file (the same bytes are expected). A pass per layer runs the model up to that
layer: Σ(ℓ+1) decoder layers over the layers asked for, where the one pass runs max(ℓ)+1, the bound on the
speed-up when the decoder layers dominate (the embedding, the batching and the Zarr writes do not shrink).

    python benchmarks/bench_capture_layers.py \
        --model-dir /tmp/fresh/resources/models/gemma3-270m \
        --tokens /tmp/fresh/results/tokens/gemma3-270m/train.zarr --max-tokens 20000
"""

from __future__ import annotations

import argparse
import filecmp
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import machine, save, table


def same_files(a: Path, b: Path) -> bool:
    """Whether two folders hold the same files with the same bytes."""
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    if names != sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file()):
        return False
    return all(filecmp.cmp(a / name, b / name, shallow=False) for name in names)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default="/tmp/fresh/resources/models/gemma3-270m")
    parser.add_argument("--tokens", default="/tmp/fresh/results/tokens/gemma3-270m/train.zarr")
    parser.add_argument("--max-tokens", type=int, default=4000, help="time the first sequences up to this many tokens")
    parser.add_argument("--layers", type=int, nargs="*", help="layers to capture (default: every layer)")
    parser.add_argument("--batch-tokens", type=int, default=2048)
    parser.add_argument("--window-sequences", type=int, default=1024)
    parser.add_argument("--chunk-mb", type=float, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=1, help="times each way runs (the best time is kept)")
    parser.add_argument("--out", default=None, help="folder for the temporary stores (default: the system's)")
    parser.add_argument("--name", default="bench_capture_layers", help="results file: benchmarks/results/NAME.txt")
    return parser.parse_args()


def capture_settings(tokenizer: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments both ways of capturing share: the tokenizer's padding and the batching."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return {
        "pad_id": pad_id,
        "batch_tokens": args.batch_tokens,
        "window_sequences": args.window_sequences,
        "chunk_mb": args.chunk_mb,
        "seed": args.seed,
        "device": args.device,
        "pad_left": tokenizer.padding_side == "left",
        "special_ids": sorted(set(tokenizer.all_special_ids)),
    }


@dataclass
class Capture:
    """What both ways capture: the model, the sequences, the layers and the shared settings."""

    model: Any
    sequences: list[Any]
    layers: list[int]
    settings: dict[str, Any]

    def sync(self) -> None:
        import torch

        if self.settings["device"] == "cuda":
            torch.cuda.synchronize()

    def per_layer(self, folder: Path) -> float:
        """Wall seconds of one `capture_activations` pass per layer into `folder`."""
        from secret_moe.capture import capture_activations

        self.sync()
        tick = time.perf_counter()
        for layer in self.layers:
            out = folder / f"layer{layer}.zarr"
            capture_activations(self.model, self.sequences, out, layer=layer, attrs={"layer": layer}, **self.settings)
        self.sync()
        return time.perf_counter() - tick

    def one_pass(self, folder: Path) -> float:
        """Wall seconds of one `capture_layers` pass for every layer into `folder`."""
        from secret_moe.capture import capture_layers

        self.sync()
        tick = time.perf_counter()
        outs = {layer: folder / f"layer{layer}.zarr" for layer in self.layers}
        attrs = {layer: {"layer": layer} for layer in self.layers}
        capture_layers(self.model, self.sequences, outs, attrs=attrs, **self.settings)
        self.sync()
        return time.perf_counter() - tick


def time_both(capture: Capture, repeats: int, out: str | None) -> tuple[dict[str, list[float]], bool]:
    """Seconds of each way per repeat (in turn, after one warm-up), and whether their stores are the same bytes."""
    from secret_moe.capture import capture_activations

    seconds: dict[str, list[float]] = {"one pass per layer": [], "one pass for all layers": []}
    identical = True
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        first_sequence = capture.sequences[:1]  # warm-up: first calls pay for allocations and kernel choices
        warmup = Path(tmp) / "warmup.zarr"
        capture_activations(
            capture.model, first_sequence, warmup, layer=capture.layers[0], attrs={}, **capture.settings
        )
        for repeat in range(repeats):
            alone, together = Path(tmp) / f"alone{repeat}", Path(tmp) / f"together{repeat}"
            seconds["one pass per layer"].append(capture.per_layer(alone))
            seconds["one pass for all layers"].append(capture.one_pass(together))
            identical &= all(same_files(alone / f"layer{i}.zarr", together / f"layer{i}.zarr") for i in capture.layers)
            print(f"repeat {repeat}: " + ", ".join(f"{k} {v[-1]:.1f} s" for k, v in seconds.items()), flush=True)
    return seconds, identical


def main() -> None:
    args = parse_args()

    from secret_moe.capture import first_tokens
    from secret_moe.models.layers import num_layers
    from secret_moe.models.loading import load_local_model, load_local_tokenizer
    from secret_moe.tokenise import read_token_store

    sequences = first_tokens(read_token_store(args.tokens)[0], args.max_tokens)
    tokens = int(sum(len(s) for s in sequences))
    settings = capture_settings(load_local_tokenizer(args.model_dir), args)
    model = load_local_model(args.model_dir, args.dtype, args.device)
    layers = sorted(args.layers) if args.layers else list(range(num_layers(model.config)))
    seconds, identical = time_both(Capture(model, sequences, layers, settings), args.repeats, args.out)

    best = {name: min(times) for name, times in seconds.items()}
    ratio = best["one pass per layer"] / best["one pass for all layers"]
    bound = sum(layer + 1 for layer in layers) / (max(layers) + 1)
    rows = [[name, f"{s:.2f}", f"{tokens * len(layers) / s:.0f}"] for name, s in best.items()]
    lines = [
        (
            f"Capture of {len(layers)} layers ({layers[0]}..{layers[-1]}) of {Path(args.model_dir).name} "
            f"({num_layers(model.config)} layers, {args.dtype}, {args.device}): {tokens} tokens in {len(sequences)} "
            f"sequences, batches of <= {args.batch_tokens} padded tokens, best of {args.repeats}"
        ),
        f"machine: {machine()}",
        "",
        table(["capture", "seconds", "rows/s (all stores)"], rows),
        "",
        f"speed-up of one pass: {ratio:.2f}x (decoder-layer bound {bound:.2f}x = sum(l+1) / (max l + 1))",
        f"stores identical byte for byte: {'yes' if identical else 'NO'}",
    ]
    save(args.name, "\n".join(lines))
    if not identical:
        raise SystemExit("the stores of one pass differ from those of a pass per layer")


if __name__ == "__main__":
    main()
