"""Training batches from an activation store, shuffled at chunk level.

Each epoch visits the chunks in a seeded random order, loads `group_chunks` of them at a time, shuffles
their rows together and cuts batches; leftovers carry into the next group, so every batch but the last
is full.  `group_chunks` 0 puts every chunk in one group: a full row permutation each epoch (read from the
store, the whole store is then loaded at once; in memory it costs nothing).  With `in_memory` the arrays are
read once and kept (fast when they fit).

A chunk holds consecutive rows of the store.  The capture shuffles each window's rows before writing them
(`capture.py`), so in its stores a chunk is already a random sample of a window's tokens and small groups give
nearly independent batches; in a store whose rows came in document order, every batch of a small group would draw
from a few documents (tests/train/test_reference.py measures what that costs a MoE student).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import zarr


class ActivationBatches:
    def __init__(
        self,
        group: zarr.Group,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int,
        group_chunks: int,
        in_memory: bool,
        device: str,
    ) -> None:
        self.x, self.y = group["x"], group["y"]
        if in_memory:
            self.x, self.y = self.x[:], self.y[:]
        self.rows, self.d_model = group["x"].shape
        self.chunk_rows = group["x"].chunks[0]
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        if group_chunks < 0:
            raise ValueError(f"group_chunks must be >= 0 (0: all chunks), got {group_chunks}")
        self.group_chunks, self.device = group_chunks, device

    def __len__(self) -> int:
        return math.ceil(self.rows / self.batch_size)

    def _groups(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """The epoch's chunk groups, in a seeded random order, each with the permutation of its rows (None
        without shuffling): both reading paths below visit rows in this order."""
        chunks = np.arange(math.ceil(self.rows / self.chunk_rows))
        rng = np.random.default_rng([self.seed, epoch])
        if self.shuffle:
            rng.shuffle(chunks)
        group = self.group_chunks or len(chunks)
        for first in range(0, len(chunks), group):
            picked = chunks[first : first + group]
            rows = sum(min(self.chunk_rows, self.rows - c * self.chunk_rows) for c in picked)
            yield picked, rng.permutation(rows) if self.shuffle else None

    def _blocks(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for picked, perm in self._groups(epoch):
            parts = [
                (
                    self.x[c * self.chunk_rows : (c + 1) * self.chunk_rows],
                    self.y[c * self.chunk_rows : (c + 1) * self.chunk_rows],
                )
                for c in picked
            ]
            x_ND = np.concatenate([p[0] for p in parts])
            y_ND = np.concatenate([p[1] for p in parts])
            yield (x_ND, y_ND) if perm is None else (x_ND[perm], y_ND[perm])

    def row_order(self, epoch: int) -> np.ndarray:
        """The epoch's row order, the same as `_blocks` visits rows."""
        parts = []
        for picked, perm in self._groups(epoch):
            rows = np.concatenate(
                [np.arange(c * self.chunk_rows, min((c + 1) * self.chunk_rows, self.rows)) for c in picked]
            )
            parts.append(rows if perm is None else rows[perm])
        return np.concatenate(parts)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches (x_BD, y_BD) as float32 tensors on the device."""
        if isinstance(self.x, np.ndarray):  # in memory: one gather per batch, the same rows as from the store
            order = self.row_order(epoch)
            for start in range(0, self.rows, self.batch_size):
                picked = order[start : start + self.batch_size]
                yield self._to_device(self.x[picked], self.y[picked])
            return
        carry_x = np.empty((0, self.d_model), np.float32)
        carry_y = carry_x
        for x_ND, y_ND in self._blocks(epoch):
            x_ND, y_ND = np.concatenate([carry_x, x_ND]), np.concatenate([carry_y, y_ND])
            full = len(x_ND) - len(x_ND) % self.batch_size
            for start in range(0, full, self.batch_size):
                yield self._to_device(x_ND[start : start + self.batch_size], y_ND[start : start + self.batch_size])
            carry_x, carry_y = x_ND[full:], y_ND[full:]
        if len(carry_x):
            yield self._to_device(carry_x, carry_y)

    def _to_device(self, x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.ascontiguousarray(x)).to(self.device), torch.from_numpy(np.ascontiguousarray(y)).to(
            self.device
        )


def output_variance(batches: ActivationBatches) -> float:
    """Mean over dimensions of the per-dimension variance of y (the paper's FVU denominator)."""
    total = np.zeros(batches.d_model)
    squares = np.zeros(batches.d_model)
    for _, y_BD in batches.epoch():
        y = y_BD.double().cpu().numpy()
        total += y.sum(axis=0)
        squares += (y**2).sum(axis=0)
    mean = total / batches.rows
    return float(np.mean(squares / batches.rows - mean**2))
