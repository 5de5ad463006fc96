"""Zarr activation stores: creation, commit/finish, checked opening, and clear errors on non-stores."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from secret_moe.errors import StoreMismatchError
from secret_moe.provenance import read_json
from secret_moe.store import (
    PROGRESS_FILE,
    chunk_rows_for,
    commit_rows,
    create_store,
    finish_store,
    open_or_create,
    open_store,
    partial_path,
    read_rows,
)


def test_create_commit_finish_and_open(tmp_path):
    final = tmp_path / "train.zarr"
    partial = partial_path(final)
    assert partial.name == "train.zarr.partial"
    group = create_store(partial, 300, 8, 64, {"layer": 3, "model_id": "m"})
    assert group["x"].shape == group["y"].shape == (300, 8)
    assert group["x"].chunks == (64, 8)
    assert read_json(partial / PROGRESS_FILE) == {"rows": 0}
    x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    group["x"][:] = x
    group["y"][:] = 2 * x
    commit_rows(partial, 300)
    assert read_json(partial / PROGRESS_FILE) == {"rows": 300}
    finish_store(partial, final)
    assert not partial.exists() and not (final / PROGRESS_FILE).exists()

    opened = open_store(final, {"layer": 3})
    assert np.array_equal(opened["x"][:], x)
    rows_x, rows_y = read_rows(opened, 10, 20)
    assert np.array_equal(rows_x, x[10:20]) and np.array_equal(rows_y, 2 * x[10:20])
    with pytest.raises(ValueError, match="read-only|read only"):
        opened["x"][0] = 1.0  # read-only


def test_open_store_checks_metadata_naming_the_key(tmp_path, make_store):
    x = np.zeros((10, 4))
    path = make_store(tmp_path / "s.zarr", x, x, 5, {"layer": 3, "model_id": "m"})
    with pytest.raises(StoreMismatchError, match="'model_id'") as error:
        open_store(path, {"layer": 3, "model_id": "other"})
    assert "other" in str(error.value) and str(path) in str(error.value)
    with pytest.raises(StoreMismatchError, match="'tokens'"):
        open_store(path, {"tokens": 10})  # absent attributes mismatch too


@pytest.mark.parametrize("kind", ["missing", "empty_dir", "text_file", "zarr_without_arrays", "partial"])
def test_open_store_on_a_non_store_is_a_clear_error(tmp_path, kind):
    path = tmp_path / "thing.zarr"
    if kind == "empty_dir":
        path.mkdir()
    elif kind == "text_file":
        path.write_text("not a store")
    elif kind == "zarr_without_arrays":
        zarr.open_group(str(path), mode="w").attrs["layer"] = 1
    elif kind == "partial":  # an unfinished store is not opened as a finished one
        create_store(partial_path(path), 10, 4, 5, {})
        path = partial_path(path)
        (path / "zarr.json").unlink()
    with pytest.raises(StoreMismatchError) as error:
        open_store(path)
    assert str(path) in str(error.value)
    assert "store" in str(error.value)


def test_open_or_create_resumes_matching_and_restarts_uncommitted(tmp_path):
    path = tmp_path / "p.zarr.partial"
    attrs = {"layer": 1, "tokens": 100}
    group, done = open_or_create(path, 100, 4, 10, attrs, checked=attrs)
    assert done == 0
    group["x"][:20] = 1.0
    commit_rows(path, 20)
    group, done = open_or_create(path, 100, 4, 10, attrs, checked=attrs)
    assert done == 20
    assert np.all(group["x"][:20] == 1.0)
    with pytest.raises(StoreMismatchError, match="'tokens'"):
        open_or_create(path, 100, 4, 10, attrs, checked={**attrs, "tokens": 101})
    (path / PROGRESS_FILE).unlink()  # killed before the first commit: started afresh
    group, done = open_or_create(path, 100, 4, 10, attrs, checked=attrs)
    assert done == 0 and np.all(group["x"][:20] == 0.0)


@pytest.mark.parametrize(("d_model", "chunk_mb"), [(32, 1), (640, 2), (1024, 1), (2048, 4), (7, 1.5)])
def test_chunk_rows_give_at_least_the_requested_size(d_model, chunk_mb):
    rows = chunk_rows_for(d_model, chunk_mb)
    assert rows * d_model * 4 >= chunk_mb * 2**20
    assert (rows - 1) * d_model * 4 < chunk_mb * 2**20  # and no more than one row above it
