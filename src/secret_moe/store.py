"""Zarr v3 activation stores: arrays `x` (MLP inputs) and `y` (teacher outputs), rows chunked, and for
stores of token positions the row arrays of `rows.py` (position, token id, kind), chunked alike.

A store is written under `<final>.partial` with its full shape and metadata fixed at creation; a small
`progress.json` (replaced atomically) records how many rows are committed.  Rows are written in whole
chunks, so a committed chunk is never touched again, and the finished store is sealed (`store_check.seal`: every
chunk's size and CRC-32 in `manifest.json`) and renamed into place.  `open_store` checks a finished store against
its manifest before anything reads it (`store_check.check_store`).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from secret_moe.errors import StoreMismatchError
from secret_moe.provenance import read_json, write_json
from secret_moe.store_check import check_store, seal

# Float activations barely compress; byte-shuffled lz4 saves a little at almost no CPU cost.
_COMPRESSOR = BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")
PROGRESS_FILE = "progress.json"


def chunk_rows_for(d_model: int, chunk_mb: float, itemsize: int = 4) -> int:
    """Rows per chunk so that one chunk of one array holds at least `chunk_mb` MiB."""
    return math.ceil(chunk_mb * 2**20 / (d_model * itemsize))


def partial_path(final: str | Path) -> Path:
    final = Path(final)
    return final.with_name(final.name + ".partial")


def create_store(
    path: str | Path,
    rows: int,
    d_model: int,
    chunk_rows: int,
    attrs: dict[str, Any],
    row_arrays: dict[str, str] | None = None,
) -> zarr.Group:
    """A new store of `rows` rows; `row_arrays` (name: dtype) adds one-dimensional arrays aligned with x."""
    group = zarr.open_group(str(path), mode="w")
    for name in ("x", "y"):
        group.create_array(
            name, shape=(rows, d_model), chunks=(chunk_rows, d_model), dtype="float32", compressors=_COMPRESSOR
        )
    for name, dtype in (row_arrays or {}).items():
        group.create_array(name, shape=(rows,), chunks=(chunk_rows,), dtype=dtype, compressors=_COMPRESSOR)
    group.attrs.update(attrs)
    write_json(Path(path) / PROGRESS_FILE, {"rows": 0})
    return group


def check_attrs(found: dict[str, Any], expected: dict[str, Any], where: str | Path) -> None:
    """Fail, naming the key, when a store's metadata disagrees with what the config asks for."""
    for key, value in expected.items():
        if found.get(key) != value:
            raise StoreMismatchError(
                f"store {str(where)!r}: attribute {key!r} is {found.get(key)!r} but the config asks for "
                f"{value!r}. Delete the store (or restore the config) and run again."
            )


def open_or_create(
    path: str | Path,
    rows: int,
    d_model: int,
    chunk_rows: int,
    attrs: dict[str, Any],
    checked: dict[str, Any],
    row_arrays: dict[str, str] | None = None,
) -> tuple[zarr.Group, int]:
    """Resume a partial store whose metadata matches `checked`, or start a new one; returns rows done."""
    path = Path(path)
    if (path / PROGRESS_FILE).is_file():
        group = zarr.open_group(str(path), mode="r+")
        check_attrs(dict(group.attrs), checked, path)
        return group, read_json(path / PROGRESS_FILE)["rows"]
    if path.exists():  # killed before the first commit: nothing worth keeping
        shutil.rmtree(path)
    return create_store(path, rows, d_model, chunk_rows, attrs, row_arrays), 0


def commit_rows(path: str | Path, rows: int) -> None:
    write_json(Path(path) / PROGRESS_FILE, {"rows": rows})


def finish_store(partial: str | Path, final: str | Path) -> None:
    seal(partial)  # before progress.json goes: a job killed here finds every row committed and seals again
    (Path(partial) / PROGRESS_FILE).unlink()
    Path(partial).rename(final)


def open_store(path: str | Path, expected: dict[str, Any] | None = None, *, checksums: bool = True) -> zarr.Group:
    """Open a finished store read-only, checking its metadata against `expected` and its chunks against its
    manifest: all there with their sizes, and with `checksums` (for readers of the rows, not of the metadata
    alone) their CRC-32s.  A damaged store raises StoreDamagedError before anything reads it."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreMismatchError(f"{str(path)!r} is not a finished activation store (no zarr.json)")
    check_store(path, checksums=checksums)  # first: the metadata read below may be what is damaged
    group = zarr.open_group(str(path), mode="r")
    if "x" not in group or "y" not in group:
        raise StoreMismatchError(f"store {str(path)!r} lacks its x or y array")
    check_attrs(dict(group.attrs), expected or {}, path)
    return group


def read_rows(group: zarr.Group, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    return group["x"][start:stop], group["y"][start:stop]
