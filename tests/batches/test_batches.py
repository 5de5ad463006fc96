"""Training batches: every row exactly once per epoch, chunk-level shuffling, full batches but the last."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from secret_moe.batches import ActivationBatches, output_variance
from secret_moe.store import open_store

ROWS, D, CHUNK = 1000, 4, 64


@pytest.fixture
def store(tmp_path, make_store):
    """Row i holds x = (i, i, i, i) + noise-free tag and y = f(x), so rows and their pairing can be traced."""
    ids = np.arange(ROWS, dtype=np.float32)
    x = np.repeat(ids[:, None], D, axis=1)
    x[:, 1] = np.sin(ids)
    y = np.stack([2 * ids + 1, ids**0.5, np.cos(ids), -ids], axis=1)
    return open_store(make_store(tmp_path / "s.zarr", x, y, CHUNK))


def batches(store, **overrides):
    kwargs = {"batch_size": 96, "shuffle": True, "seed": 5, "group_chunks": 3, "in_memory": True, "device": "cpu"}
    return ActivationBatches(store, **{**kwargs, **overrides})


def ids_of(epoch):
    out = []
    for x, y in epoch:
        out.append(x[:, 0].numpy().astype(int))
        # y stays paired with its x
        np.testing.assert_array_equal(y[:, 0].numpy(), 2 * x[:, 0].numpy() + 1)
    return out


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize(("batch_size", "group_chunks"), [(96, 3), (64, 1), (1000, 2), (333, 20), (7, 2)])
def test_every_row_exactly_once_and_full_batches(store, in_memory, batch_size, group_chunks):
    data = batches(store, in_memory=in_memory, batch_size=batch_size, group_chunks=group_chunks)
    assert data.rows == ROWS and data.d_model == D
    for epoch in range(2):
        parts = ids_of(data.epoch(epoch))
        assert len(parts) == len(data) == -(-ROWS // batch_size)
        assert all(len(p) == batch_size for p in parts[:-1])
        assert len(parts[-1]) == ROWS - batch_size * (len(parts) - 1)
        assert sorted(np.concatenate(parts).tolist()) == list(range(ROWS))


def test_shuffled_differently_each_epoch_and_reproducibly(store):
    data = batches(store)
    first, second = np.concatenate(ids_of(data.epoch(0))), np.concatenate(ids_of(data.epoch(1)))
    assert not np.array_equal(first, np.arange(ROWS))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, np.concatenate(ids_of(batches(store).epoch(0))))
    assert not np.array_equal(first, np.concatenate(ids_of(batches(store, seed=6).epoch(0))))
    # in-memory and streamed reads visit the same rows in the same order
    np.testing.assert_array_equal(first, np.concatenate(ids_of(batches(store, in_memory=False).epoch(0))))


def test_shuffle_is_chunk_level(store):
    """A group of `group_chunks` chunks is read at a time: the first batch draws from at most that many chunks."""
    data = batches(store, group_chunks=2, batch_size=32)
    first_batch = next(iter(data.epoch(0)))[0][:, 0].numpy().astype(int)
    assert len(set(first_batch // CHUNK)) <= 2
    # ... and the first rows of an epoch do not all come from the start of the store
    starts = {int(next(iter(data.epoch(e)))[0][0, 0]) // CHUNK for e in range(6)}
    assert len(starts) > 1


@pytest.mark.parametrize("in_memory", [True, False])
def test_group_chunks_zero_is_a_full_row_permutation(store, in_memory):
    """`group_chunks` 0: every chunk in one group, the same order as a group of all chunks, and a first batch
    drawn from most chunks (a full row permutation, not a chunk-level shuffle)."""
    full = batches(store, group_chunks=0, batch_size=32, in_memory=in_memory)
    everything = batches(store, group_chunks=-(-ROWS // CHUNK), batch_size=32, in_memory=in_memory)
    for epoch in (0, 1):
        np.testing.assert_array_equal(np.concatenate(ids_of(full.epoch(epoch))), full.row_order(epoch))
        np.testing.assert_array_equal(full.row_order(epoch), everything.row_order(epoch))
    first_batch = next(iter(full.epoch(0)))[0][:, 0].numpy().astype(int)
    assert len(set(first_batch // CHUNK)) >= 8  # 32 random rows of 16 chunks hit 14 of them (median)
    with pytest.raises(ValueError, match="group_chunks"):
        batches(store, group_chunks=-1)


def test_without_shuffle_rows_come_in_store_order(store):
    data = batches(store, shuffle=False, batch_size=100)
    np.testing.assert_array_equal(np.concatenate(ids_of(data.epoch(0))), np.arange(ROWS))


def test_batches_are_float32_tensors(store):
    x, y = next(iter(batches(store).epoch(0)))
    assert x.dtype == y.dtype and str(x.dtype) == "torch.float32"
    assert x.shape == (96, D) and x.device.type == "cpu"


def test_output_variance_equals_numpy(store):
    y = store["y"][:].astype(np.float64)
    expected = float(np.mean(np.var(y, axis=0)))
    for shuffle in (True, False):
        assert output_variance(batches(store, shuffle=shuffle)) == pytest.approx(expected, rel=1e-9)


def test_in_memory_batches_equal_the_store_read_batches(store):
    """The in-memory path gathers rows by a precomputed order; it must give exactly the chunk-streaming batches."""
    kwargs = {"shuffle": True, "seed": 3, "group_chunks": 3, "device": "cpu"}
    streamed = ActivationBatches(store, 100, in_memory=False, **kwargs)
    gathered = ActivationBatches(store, 100, in_memory=True, **kwargs)
    for epoch in (0, 1):
        pairs = list(zip(streamed.epoch(epoch), gathered.epoch(epoch), strict=True))
        assert len(pairs) == len(streamed)
        for (x_a, y_a), (x_b, y_b) in pairs:
            assert torch.equal(x_a, x_b) and torch.equal(y_a, y_b)
