"""Stores verified on read: the manifest a finished store carries, and what opening a damaged store says.

Every store here is written through the package's own writer (`create_store` ... `finish_store`, as capture and
the Gaussian sampler write theirs) and damaged on disk: a chunk file deleted, truncated or overwritten.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import zarr

from secret_moe.errors import StoreDamagedError
from secret_moe.provenance import read_json
from secret_moe.rows import ROW_ARRAYS
from secret_moe.store import commit_rows, create_store, finish_store, open_store, partial_path
from secret_moe.store_check import MANIFEST_FILE, find_damage, rebuild_command
from secret_moe.tokenise import read_token_store, write_token_store

ROWS, D, CHUNK = 300, 8, 64  # five chunks per array, the last one short (rows 256-299)
STORE = "results/activations/tiny/layer1/train.zarr"


def write_activations(final: Path, kinds: np.ndarray | None = None) -> np.ndarray:
    """A finished store of ROWS rows with the row arrays of a capture; returns its x."""
    partial = partial_path(final)
    partial.parent.mkdir(parents=True, exist_ok=True)
    group = create_store(partial, ROWS, D, CHUNK, {"layer": 1, "model_id": "tiny"}, ROW_ARRAYS)
    x = np.random.default_rng(0).standard_normal((ROWS, D)).astype(np.float32)
    group["x"][:] = x
    group["y"][:] = np.tanh(x)
    group["position"][:] = np.arange(ROWS) % 37
    group["token_id"][:] = np.arange(ROWS) + 5
    group["kind"][:] = np.zeros(ROWS, np.uint8) if kinds is None else kinds
    commit_rows(partial, ROWS)
    finish_store(partial, final)
    return x


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    """A finished activation store where the workflow puts it, the run's folder as the current one."""
    monkeypatch.chdir(tmp_path)
    write_activations(tmp_path / STORE)
    return Path(STORE)


def test_a_finished_store_records_every_chunk_of_every_array(tmp_path):
    kinds = np.zeros(ROWS, np.uint8)
    kinds[CHUNK * 2 :] = 1  # the first two chunks of `kind` are all fill value: Zarr would not write them
    write_activations(tmp_path / "a.zarr", kinds)
    manifest = read_json(tmp_path / "a.zarr" / MANIFEST_FILE)
    assert manifest["checksum"] == "crc32" and manifest["package_version"]
    assert sorted(manifest["arrays"]) == ["kind", "position", "token_id", "x", "y"]
    assert sorted(manifest["arrays"]["x"]["chunk_files"]) == [f"c/{i}/0" for i in range(5)]
    assert sorted(manifest["arrays"]["kind"]["chunk_files"]) == [f"c/{i}" for i in range(5)]
    for chunk, recorded in manifest["arrays"]["kind"]["chunk_files"].items():
        assert (tmp_path / "a.zarr" / "kind" / chunk).stat().st_size == recorded["bytes"]
    assert set(manifest["metadata"]) == {"zarr.json", *(f"{name}/zarr.json" for name in manifest["arrays"])}
    opened = open_store(tmp_path / "a.zarr")
    assert np.array_equal(opened["kind"][:], kinds)

    write_activations(tmp_path / "b.zarr", kinds)  # the same rows give the same bytes (resumed captures compare so)
    assert (tmp_path / "a.zarr" / MANIFEST_FILE).read_bytes() == (tmp_path / "b.zarr" / MANIFEST_FILE).read_bytes()


def test_an_intact_store_opens_and_reads_back(tmp_path):
    x = write_activations(tmp_path / "s.zarr")
    report = find_damage(tmp_path / "s.zarr")
    assert report.damage == [] and report.chunks == 25 and report.manifest
    assert np.array_equal(open_store(tmp_path / "s.zarr", {"layer": 1})["x"][:], x)


@pytest.mark.parametrize("checksums", [True, False])
def test_a_deleted_chunk_stops_the_open_naming_store_array_chunk_and_rebuild(store, checksums):
    (store / "x" / "c" / "2" / "0").unlink()
    with pytest.raises(StoreDamagedError) as error:
        open_store(store, checksums=checksums)  # the cheap check, on every open, finds it
    message = str(error.value)
    assert f"store {str(store)!r} is damaged" in message
    assert "array 'x', chunk x/c/2/0 (rows 128-191) is missing" in message
    assert f"`snakemake --cores 1 --force {STORE}` (rule capture_activations)" in message


@pytest.mark.parametrize("checksums", [True, False])
def test_a_truncated_chunk_stops_the_open_naming_its_size(store, checksums):
    chunk = store / "y" / "c" / "4" / "0"
    written = chunk.stat().st_size
    os.truncate(chunk, written // 2)
    with pytest.raises(StoreDamagedError) as error:
        open_store(store, checksums=checksums)
    assert f"array 'y', chunk y/c/4/0 (rows 256-299) has {written // 2:,} bytes, {written:,} were written" in str(
        error.value
    )


def test_other_bytes_of_the_same_size_are_found_by_the_checksum_only(store):
    chunk = store / "x" / "c" / "1" / "0"
    data = bytearray(chunk.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte late in the compressed block: the size is unchanged
    chunk.write_bytes(bytes(data))
    open_store(store, checksums=False)  # sizes alone cannot see it (what sample_gaussian opens its `like` with)
    with pytest.raises(StoreDamagedError, match=r"chunk x/c/1/0 \(rows 64-127\) has other bytes than were written"):
        open_store(store)


def test_edited_metadata_is_damage_too(store):
    metadata = store / "zarr.json"
    metadata.write_text(metadata.read_text().replace('"tiny"', '"tinY"'))
    with pytest.raises(StoreDamagedError, match=r"file zarr.json \(metadata of the store\) has other bytes"):
        open_store(store)
    (store / "kind" / "zarr.json").unlink()
    assert "file kind/zarr.json (metadata of array 'kind') is missing" in [
        d.describe() for d in find_damage(store).damage
    ]


def test_an_unreadable_manifest_is_damage(store):
    (store / MANIFEST_FILE).write_text('{"format": 1, "arr')
    with pytest.raises(StoreDamagedError, match="file manifest.json .* cannot be read"):
        open_store(store)


def test_many_damaged_chunks_are_counted_after_the_first_three(store):
    for chunk in range(5):
        (store / "y" / "c" / str(chunk) / "0").unlink()
    with pytest.raises(StoreDamagedError, match="y/c/2/0 .* is missing; and 2 more damaged files"):
        open_store(store)


def test_a_store_before_manifests_is_checked_by_shape_and_decoding(store):
    (store / MANIFEST_FILE).unlink()
    (store / "kind" / "c" / "3").unlink()  # all fill value: a legacy store may lack it, and reads it as zeros
    assert find_damage(store).damage == []
    open_store(store)
    (store / "x" / "c" / "2" / "0").unlink()
    with pytest.raises(StoreDamagedError, match=r"array 'x', chunk x/c/2/0 \(rows 128-191\) is missing"):
        open_store(store, checksums=False)
    os.truncate(store / "y" / "c" / "1" / "0", 10)
    damage = [d.describe() for d in find_damage(store).damage]
    assert damage[0] == "array 'x', chunk x/c/2/0 (rows 128-191) is missing"
    assert damage[1].startswith("array 'y', chunk y/c/1/0 (rows 64-127) cannot be decoded (RuntimeError: ")


@pytest.mark.parametrize(
    ("store", "rule"),
    [
        ("results/activations/m/layer3/validation.zarr", "capture_activations"),
        ("results/gaussian/m/layer3/train.zarr", "sample_gaussian"),
        ("results/gaussian/m/layer3/draw2/validation.zarr", "sample_gaussian_draw"),
        ("results/tokens/m/train.zarr", "tokenise_corpus"),
    ],
)
def test_the_rebuild_command_forces_the_rule_that_wrote_the_store(tmp_path, monkeypatch, store, rule):
    monkeypatch.chdir(tmp_path)
    assert rebuild_command(store).startswith(f"`snakemake --cores 1 --force {store}` (rule {rule}), with")
    elsewhere = f"`snakemake --cores 1 --force {store}` (rule {rule}) in {tmp_path / 'run'}, with"
    assert rebuild_command(tmp_path / "run" / store).startswith(elsewhere)
    assert rebuild_command(tmp_path / "my.zarr") == "the step that wrote it (delete the store and run it again)"


def test_a_token_store_is_sealed_and_checked(tmp_path):
    sequences = [np.arange(n, dtype=np.int32) + 1 for n in (5, 9, 3)]
    write_token_store(tmp_path / "t.zarr", sequences, {"split": "train"})
    assert sorted(read_json(tmp_path / "t.zarr" / MANIFEST_FILE)["arrays"]) == ["ids", "offsets"]
    read, _ = read_token_store(tmp_path / "t.zarr")
    assert [list(s) for s in read] == [list(s) for s in sequences]
    (tmp_path / "t.zarr" / "ids" / "c" / "0").unlink()
    with pytest.raises(StoreDamagedError, match="array 'ids', chunk ids/c/0 .* is missing"):
        read_token_store(tmp_path / "t.zarr")


def test_zarr_alone_reads_a_deleted_chunk_as_zeros(store):
    """Why the check exists: without it, the rows of a deleted chunk come back as the fill value."""
    (store / "x" / "c" / "2" / "0").unlink()
    x = zarr.open_group(str(store), mode="r")["x"][:]
    assert not x[128:192].any() and x[:128].all()
