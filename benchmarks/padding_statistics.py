"""What keeping padded positions does to D_act: the default run's store and its padding control side by side.

For each activation store pair (train, validation) it prints the rows, the share of padded positions, the mean
per-dimension variance of the MLP inputs x and outputs y (the paper's logs give 0.233 and 0.0195 for
Gemma-3-270M layer 9), and the FVU of the best affine map x -> y (least squares on the train store,
evaluated on validation): how much of y's variance a linear model already explains.

    python benchmarks/padding_statistics.py --root /tmp/final2 --models gemma3-270m gemma3-270m-padded --layer 9
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import zarr

from _common import machine, save, table


def affine_fvu(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> float:
    def design(x: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(x).double()
        return torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)

    weights = torch.linalg.lstsq(design(x_train), torch.from_numpy(y_train).double()).solution
    residual = torch.from_numpy(y_val).double() - design(x_val) @ weights
    return float(residual.pow(2).mean() / torch.from_numpy(y_val).double().var(0).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/final2", help="working directory of a finished default run")
    parser.add_argument("--models", nargs="+", default=["gemma3-270m", "gemma3-270m-padded"])
    parser.add_argument("--layer", type=int, default=9)
    args = parser.parse_args()
    rows = []
    for model in args.models:
        stores = {
            split: Path(args.root) / "results/activations" / model / f"layer{args.layer}" / f"{split}.zarr"
            for split in ("train", "validation")
        }
        data = {split: zarr.open_group(str(path), mode="r") for split, path in stores.items()}
        (x_t, y_t), (x_v, y_v) = [(data[s]["x"][:], data[s]["y"][:]) for s in ("train", "validation")]
        stats = json.loads((stores["train"] / "capture_stats.json").read_text())
        rows.append(
            [
                model,
                len(x_t),
                len(x_v),
                f"{stats['padding_fraction']:.3f}",
                f"{x_t.var(0).mean():.4f}",
                f"{y_t.var(0).mean():.5f}",
                f"{affine_fvu(x_t, y_t, x_v, y_v):.3f}",
            ]
        )
    text = (
        f"D_act with and without padded positions, layer {args.layer} (stores under {args.root})\n"
        f"machine: {machine()}\n\n"
        + table(
            ["model", "train rows", "val rows", "padded share", "x variance", "y variance", "affine FVU (val)"], rows
        )
    )
    save("padding_statistics", text)


if __name__ == "__main__":
    main()
