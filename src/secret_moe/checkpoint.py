"""Checkpoints of a training run, so that a killed run continues where it stopped and ends in the same bytes.

A checkpoint holds a `train.Progress` at the end of an epoch (the students, their Adam optimisers, gradient scalers
and cosine schedulers, on the trunk and on a cooldown branch in progress; the finished rungs and every history; the
epochs, seconds and rows spent) and the state of every random number generator.  Nothing else is needed: an epoch's
batch order is a function of the seed and the epoch number (`batches.ActivationBatches`), so the next epoch's
batches follow from the epochs done.  It is written atomically (a temporary file, fsync, rename), so a kill at any
moment leaves the previous checkpoint or the new one, never half of one, and it records a fingerprint of everything
that decides the run (the caller's): a checkpoint of other settings is ignored, with a log line, and replaced.
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from secret_moe.train import Line, Progress

log = logging.getLogger(__name__)

FORMAT = 1  # of the file's contents: a checkpoint of another format is ignored like one of other settings
MEBIBYTE = 2**20


@dataclass
class Checkpoint:
    """The checkpoint file of one run: where it lives, the fingerprint of the settings it belongs to, and how
    often it is written (at the end of the first epoch after `minutes` since the last write; 0: every epoch)."""

    path: Path
    fingerprint: str
    minutes: float = 0.0
    _written: float = field(default_factory=time.monotonic, init=False)

    def resume(self, progress: Progress) -> bool:
        """Load the checkpoint into `progress` (fresh, at the start) if it holds a run of these settings; whether
        it did."""
        state = self._read()
        if state is None:
            return False
        _load_line(progress.trunk, state["trunk"])
        if state["branch"] is not None:
            progress.branch = progress.trunk.branch()
            _load_line(progress.branch, state["branch"])
        progress.rungs = state["rungs"]
        progress.epochs_trained, progress.seconds, progress.rows_seen = state["spent"]
        _set_rng_state(state["rng"])
        branch = f", a cooldown branch at epoch {progress.branch.done}" if progress.branch else ""
        log.info(
            "resumed from epoch %d (%s): %d epochs trained before, the trunk at epoch %d%s, %d rungs finished",
            progress.trunk.done if progress.branch is None else progress.branch.done,
            self.path,
            progress.epochs_trained,
            progress.trunk.done,
            branch,
            len(progress.rungs),
        )
        self._written = time.monotonic()
        return True

    def offer(self, progress: Progress) -> None:
        """Called at the end of every epoch: writes `progress` if `minutes` have passed since the last write."""
        if time.monotonic() - self._written >= self.minutes * 60:
            self.write(progress)

    def write(self, progress: Progress) -> None:
        """Write `progress` and the random number generators' states, atomically."""
        tick = time.perf_counter()
        state = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "trunk": _line_state(progress.trunk),
            "branch": _line_state(progress.branch) if progress.branch is not None else None,
            "rungs": progress.rungs,
            "spent": (progress.epochs_trained, progress.seconds, progress.rows_seen),
            "rng": _rng_state(),
        }
        size = write_atomically(self.path, state)
        self._written = time.monotonic()
        log.info(
            "checkpoint after %d epochs written (%.1f MiB in %.2f s): %s",
            progress.epochs_trained,
            size / MEBIBYTE,
            time.perf_counter() - tick,
            self.path,
        )

    def remove(self) -> None:
        """Delete the checkpoint (once the run's results are written)."""
        self.path.unlink(missing_ok=True)
        _temporary(self.path).unlink(missing_ok=True)

    def _read(self) -> dict[str, Any] | None:
        """The checkpoint's contents if it exists and belongs to these settings, else None (with a log line)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch.load of damaged bytes raises many kinds; a fresh start is always right
            log.warning("checkpoint %s is unreadable (%s): ignored, training starts from epoch 1", self.path, error)
            return None
        found = (state.get("format"), state.get("fingerprint")) if isinstance(state, dict) else None
        if found != (FORMAT, self.fingerprint):
            log.warning(
                "checkpoint %s is of other settings (format and fingerprint %s, these are %s): ignored, training "
                "starts from epoch 1 and replaces it",
                self.path,
                found,
                (FORMAT, self.fingerprint),
            )
            return None
        return state


def write_atomically(path: Path, state: dict[str, Any]) -> int:
    """`torch.save` to a temporary file beside `path`, flushed to disk, then renamed over `path` (and the rename
    flushed too); returns the file's size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
    with temporary.open("wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    size = temporary.stat().st_size
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return size


def _temporary(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def _line_state(line: Line) -> dict[str, Any]:
    return {
        "students": [student.state_dict() for student in line.students],
        "optimizers": [optimizer.state_dict() for optimizer in line.optimizers],
        "scalers": [amp.scaler.state_dict() if amp.scaler is not None else None for amp in line.amps],
        "schedulers": [scheduler.state_dict() for scheduler in line.schedulers],
        "history": line.history,
        "done": line.done,
    }


def _load_line(line: Line, state: dict[str, Any]) -> None:
    for student, weights in zip(line.students, state["students"], strict=True):
        student.load_state_dict(weights)
    for optimizer, saved in zip(line.optimizers, state["optimizers"], strict=True):
        optimizer.load_state_dict(saved)
    for amp, saved in zip(line.amps, state["scalers"], strict=True):
        if amp.scaler is not None:
            amp.scaler.load_state_dict(saved)
    for scheduler, saved in zip(line.schedulers, state["schedulers"], strict=True):
        scheduler.load_state_dict(saved)
    line.history, line.done = state["history"], state["done"]


def _rng_state() -> dict[str, Any]:
    """Every random number generator the package may use (python's, numpy's global one, torch's CPU and CUDA
    generators), as tensors and plain values (a checkpoint loads with `weights_only`)."""
    _, keys, position, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": (torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state(("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
