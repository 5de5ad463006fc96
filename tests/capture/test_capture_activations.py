"""Activation extraction into Zarr: row count, attributes, chunk size, content, and exact resume after kill -9."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

import secret_moe
from secret_moe.capture import (
    capture_activations,
    capture_batch,
    first_tokens,
    padded_rows,
    plan_padded_batches,
    plan_windows,
)
from secret_moe.errors import StoreMismatchError
from secret_moe.models.loading import load_local_model
from secret_moe.provenance import fingerprint_text, read_json
from secret_moe.steps import activations as activation_steps
from secret_moe.steps.tokens import tokenise_corpus
from secret_moe.store import PROGRESS_FILE, chunk_rows_for, commit_rows, create_store, partial_path
from secret_moe.testing import tiny_corpus_config
from secret_moe.tokenise import read_token_store

LAYER = 1


@pytest.fixture(scope="module")
def token_stores(tiny_model_dir, tiny_corpus, tmp_path_factory):
    """Train/validation token stores of the tiny corpus, made by the workflow's own tokenise step."""
    out = tmp_path_factory.mktemp("tokens")
    outputs = {"train": str(out / "train.zarr"), "validation": str(out / "validation.zarr")}
    corpus = tiny_corpus_config(tiny_corpus)
    tokenise_corpus(str(tiny_model_dir), outputs, corpus, seed=0)
    return outputs


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_local_model(tiny_model_dir, "float32", "cpu")


MODEL_SPEC = {"source": "local", "hf_id": "local/tiny-gpt-neox", "layers": [LAYER], "dtype": "float32"}
CAPTURE = {"batch_tokens": 512, "window_sequences": 16, "chunk_mb": 1}


@pytest.fixture(scope="module")
def extracted(tiny_model_dir, token_stores, tmp_path_factory):
    """The train store as the capture_activations rule writes it."""
    out = tmp_path_factory.mktemp("activations") / "train.zarr"
    activation_steps.capture_activations(
        model_dir=str(tiny_model_dir),
        tokenizer_dir=str(tiny_model_dir),
        tokens=token_stores["train"],
        out=str(out),
        layer=LAYER,
        model_spec=MODEL_SPEC,
        settings=CAPTURE,
        seed=0,
        device="cpu",
    )
    return out


def test_store_has_one_row_per_non_padding_token(extracted, token_stores):
    sequences, _ = read_token_store(token_stores["train"])
    group = zarr.open_group(str(extracted), mode="r")
    tokens = sum(len(s) for s in sequences)
    assert len({len(s) for s in sequences}) > 1  # ragged: padding really happens in the batches
    assert group["x"].shape == group["y"].shape == (tokens, 32)
    assert group["x"].dtype == np.float32
    stats = read_json(extracted / "capture_stats.json")
    assert stats["tokens"] == tokens
    assert 0 <= stats["padding_fraction"] < 1
    assert not partial_path(extracted).exists()
    assert not (extracted / PROGRESS_FILE).exists()


def test_store_attributes(extracted, token_stores, tiny_corpus):
    attrs = dict(zarr.open_group(str(extracted), mode="r").attrs)
    sequences, token_attrs = read_token_store(token_stores["train"])
    lines = [" ".join(line.split()) for line in Path(tiny_corpus["train"]).read_text().splitlines() if line.strip()]
    assert attrs["model_id"] == "local/tiny-gpt-neox"
    assert attrs["layer"] == LAYER
    assert attrs["d_model"] == 32
    assert attrs["tokens"] == sum(len(s) for s in sequences) == token_attrs["tokens"]
    assert attrs["corpus_fingerprint"] == fingerprint_text("\n".join(lines))
    assert attrs["package_version"] == secret_moe.__version__
    assert attrs["split"] == "train"
    assert attrs["seed"] == 0


def test_chunks_hold_at_least_one_mebibyte(extracted):
    group = zarr.open_group(str(extracted), mode="r")
    for name in ("x", "y"):
        rows, d = group[name].chunks
        assert d == 32
        assert rows * d * group[name].dtype.itemsize >= 2**20
    for d_model, mb in [(32, 1), (640, 2), (1024, 1.5), (3, 1)]:
        assert chunk_rows_for(d_model, mb) * d_model * 4 >= mb * 2**20


def row_classes(rows: np.ndarray, reference: np.ndarray, tol: float = 1e-4) -> tuple[np.ndarray, float]:
    """For each row, the first reference row within `tol` of it (its class), and the largest nearest distance.

    Equal rows are legitimate (the same token at the start of two sequences), so rows are compared as
    multisets of classes rather than by a one-to-one matching.
    """
    distances = torch.cdist(torch.from_numpy(rows).double(), torch.from_numpy(reference).double())
    close = distances < tol
    first = torch.where(close.any(dim=1), close.float().argmax(dim=1), torch.tensor(-1))
    return first.numpy(), float(distances.min(dim=1).values.max())


def test_rows_equal_a_direct_per_sequence_capture(extracted, token_stores, model):
    sequences, _ = read_token_store(token_stores["train"])
    xs, ys = [], []
    for ids in sequences:  # one sequence at a time: no padding, no batching, no shuffling
        ids_BT = torch.from_numpy(ids.astype(np.int64))[None]
        x, y = capture_batch(model, LAYER, ids_BT, torch.ones_like(ids_BT))
        xs.append(x[0].numpy())
        ys.append(y[0].numpy())
    direct = np.concatenate([np.concatenate(xs), np.concatenate(ys)], axis=1)
    group = zarr.open_group(str(extracted), mode="r")
    stored = np.concatenate([group["x"][:], group["y"][:]], axis=1)
    assert stored.shape == direct.shape
    stored_classes, worst = row_classes(stored, direct)
    direct_classes, _ = row_classes(direct, direct)
    assert worst < 1e-4
    # the same multiset: every direct row stored exactly as often as it occurs
    assert np.array_equal(np.sort(stored_classes), np.sort(direct_classes))
    assert len(set(direct_classes)) > 0.9 * len(direct)  # almost all rows are distinct
    assert not np.allclose(stored, direct, atol=1e-4)  # ... and rows are shuffled, not in corpus order


def test_keep_padding_records_every_position_of_the_authors_batches(token_stores, model, tmp_path):
    """keep_padding: random batches of `padding_batch_lines` lines, every padded position kept. With right
    padding (this tokenizer's side) the real tokens' rows are exactly the per-sequence capture's, and the
    padded positions add rows of their own."""
    sequences, _ = read_token_store(token_stores["train"])
    lengths = np.array([len(s) for s in sequences])
    windows = plan_windows(lengths, CAPTURE["window_sequences"], seed=0)
    expected_rows = sum(padded_rows(plan_padded_batches(w, 4), lengths) for w in windows)
    assert expected_rows > lengths.sum()
    out = tmp_path / "padded.zarr"
    stats = capture_activations(
        model,
        sequences,
        out,
        layer=LAYER,
        pad_id=0,
        batch_tokens=512,
        window_sequences=16,
        chunk_mb=1,
        seed=0,
        device="cpu",
        attrs={"layer": LAYER},
        keep_padding=True,
        padding_batch_lines=4,
    )
    group = zarr.open_group(str(out), mode="r")
    assert group["x"].shape == (expected_rows, 32)
    assert stats["rows"] == expected_rows and stats["tokens"] == lengths.sum()
    assert stats["padding_fraction"] == pytest.approx(1 - lengths.sum() / expected_rows)
    direct = []
    for ids in sequences:
        ids_BT = torch.from_numpy(ids.astype(np.int64))[None]
        x, y = capture_batch(model, LAYER, ids_BT, torch.ones_like(ids_BT))
        direct.append(np.concatenate([x[0].numpy(), y[0].numpy()], axis=1))
    direct = np.concatenate(direct)
    stored = np.concatenate([group["x"][:], group["y"][:]], axis=1)
    classes, _ = row_classes(stored, direct)
    matched = classes >= 0
    assert matched.sum() >= lengths.sum()  # every real token is there (pad rows may repeat a real row)
    assert (~matched).sum() >= 0.9 * (expected_rows - lengths.sum())  # the padded positions are new rows


# A worker that captures in its own process and SIGKILLs itself at a chosen commit: before writing
# progress.json for that chunk (chunk data on disk, not committed) or right after it.
WORKER = textwrap.dedent(
    """
    import os, signal, sys, json
    import torch
    import secret_moe.capture as capture
    from secret_moe.models.loading import load_local_model
    from secret_moe.tokenise import read_token_store

    model_dir, tokens, out, mode, kill_at, kwargs = sys.argv[1:7]
    kill_at, kwargs = int(kill_at), json.loads(kwargs)
    torch.set_num_threads(1)
    real_commit, calls = capture.commit_rows, [0]

    def commit(path, rows):
        calls[0] += 1
        if mode == "before" and calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        real_commit(path, rows)
        if mode == "after" and calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    capture.commit_rows = commit
    sequences, _ = read_token_store(tokens)
    model = load_local_model(model_dir, "float32", "cpu")
    capture.capture_activations(model, sequences, out, **kwargs)
    """
)

# Small chunks (82 rows of d = 32) so the ~3000-row corpus spans many chunks and windows.
RESUME_KWARGS = {
    "layer": LAYER,
    "pad_id": 0,
    "batch_tokens": 256,
    "window_sequences": 8,
    "chunk_mb": 0.01,
    "seed": 3,
    "device": "cpu",
    "attrs": {"model_id": "local/tiny-gpt-neox", "layer": LAYER},
}


def run_capture(model, sequences, out: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        capture_activations(model, sequences, out, **RESUME_KWARGS)
    finally:
        torch.set_num_threads(threads)


def store_files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def uninterrupted(model, token_stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "train.zarr"
    sequences, _ = read_token_store(token_stores["train"])
    run_capture(model, sequences, out)
    return out


@pytest.mark.parametrize(("mode", "kill_at"), [("after", 5), ("before", 9), ("before", 1)])
def test_resume_after_kill_is_identical_to_an_uninterrupted_run(
    mode, kill_at, model, token_stores, tiny_model_dir, uninterrupted, tmp_path
):
    import json

    out = tmp_path / "train.zarr"
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    process = subprocess.run(
        [
            sys.executable,
            str(worker),
            str(tiny_model_dir),
            token_stores["train"],
            str(out),
            mode,
            str(kill_at),
            json.dumps(RESUME_KWARGS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    chunk_rows = chunk_rows_for(32, RESUME_KWARGS["chunk_mb"])
    committed = (kill_at if mode == "after" else kill_at - 1) * chunk_rows
    partial = partial_path(out)
    assert not out.exists() and partial.is_dir()
    assert read_json(partial / PROGRESS_FILE)["rows"] == committed

    sequences, _ = read_token_store(token_stores["train"])
    run_capture(model, sequences, out)  # resume

    assert out.is_dir() and not partial.exists()
    done, reference = zarr.open_group(str(out), mode="r"), zarr.open_group(str(uninterrupted), mode="r")
    assert reference["x"].shape[0] > 10 * chunk_rows
    for name in ("x", "y", "position", "token_id", "kind"):
        assert np.array_equal(done[name][:], reference[name][:])
    assert dict(done.attrs) == dict(reference.attrs)
    assert store_files(out) == store_files(uninterrupted)


def test_partial_store_with_other_metadata_is_refused(model, token_stores, tmp_path):
    sequences, _ = read_token_store(token_stores["train"])
    out = tmp_path / "train.zarr"
    kwargs = {
        **RESUME_KWARGS,
        "attrs": {"model_id": "local/tiny-gpt-neox", "layer": LAYER, "corpus_fingerprint": "aaa"},
    }
    chunk_rows = chunk_rows_for(32, kwargs["chunk_mb"])
    # the state a killed run leaves: full-shape arrays, two chunks committed
    create_store(partial_path(out), sum(len(s) for s in sequences), 32, chunk_rows, kwargs["attrs"])
    commit_rows(partial_path(out), 2 * chunk_rows)
    changed = {**kwargs, "attrs": {**kwargs["attrs"], "corpus_fingerprint": "bbb"}}
    with pytest.raises(StoreMismatchError, match="'corpus_fingerprint'") as error:
        capture_activations(model, sequences, out, **changed)
    assert "aaa" in str(error.value) and "bbb" in str(error.value)
    assert str(partial_path(out)) in str(error.value)
    changed = {**kwargs, "layer": 2, "attrs": {**kwargs["attrs"], "layer": 2}}
    with pytest.raises(StoreMismatchError, match="'layer'"):
        capture_activations(model, sequences, out, **changed)
    # the refused partial store is left as it was
    assert read_json(partial_path(out) / PROGRESS_FILE)["rows"] == 2 * chunk_rows
    assert not out.exists()


def test_partial_store_killed_before_its_first_commit_starts_over(model, token_stores, tmp_path):
    sequences, _ = read_token_store(token_stores["train"])
    out = tmp_path / "train.zarr"
    partial_path(out).mkdir()
    (partial_path(out) / "garbage").write_text("half a store")
    run_capture(model, sequences, out)
    group = zarr.open_group(str(out), mode="r")
    assert group["x"].shape[0] == sum(len(s) for s in sequences)
    assert not (out / "garbage").exists()


def test_stored_y_is_the_exported_teacher_applied_to_stored_x(extracted, tiny_model_dir, tmp_path):
    """The export_teacher step and the extraction agree: y = teacher(x) row by row in the store."""
    from secret_moe.models.teacher import load_teacher
    from secret_moe.steps.models import export_teacher

    export_teacher(str(tiny_model_dir), str(tmp_path / "teacher"), LAYER, MODEL_SPEC)
    teacher = load_teacher(tmp_path / "teacher")
    group = zarr.open_group(str(extracted), mode="r")
    with torch.no_grad():
        y = teacher(torch.from_numpy(group["x"][:])).numpy()
    np.testing.assert_allclose(group["y"][:], y, rtol=1e-5, atol=1e-5)


def test_first_tokens_takes_leading_lines_up_to_the_cap():
    sequences = [np.arange(n) for n in (5, 7, 3, 9)]
    assert first_tokens(sequences, None) == sequences
    assert [len(s) for s in first_tokens(sequences, 12)] == [5, 7]  # reaches the cap exactly
    assert [len(s) for s in first_tokens(sequences, 13)] == [5, 7, 3]  # the line that crosses it is kept
    assert [len(s) for s in first_tokens(sequences, 1000)] == [5, 7, 3, 9]
