"""`secret-moe verify [PATH ...]`: every store of a finished run checked against its manifest, in a process of its
own as a user runs it, one line per store, exit 1 when any is damaged; nothing trains, nothing is written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from secret_moe.store import commit_rows, create_store, partial_path
from secret_moe.tokenise import write_token_store

REPO = Path(__file__).resolve().parents[2]
STORES = {
    "train": "results/activations/tiny/layer1/train.zarr",
    "validation": "results/activations/tiny/layer1/validation.zarr",
    "gaussian": "results/gaussian/tiny/layer1/train.zarr",
}


def verify(cwd: Path, *paths: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "secret_moe.cli", "verify", *paths]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


@pytest.fixture
def run(tmp_path, make_store) -> Path:
    """A run's folder: three finished activation stores, a token store and an interrupted capture."""
    x = np.random.default_rng(0).standard_normal((300, 8))
    for store in STORES.values():
        (tmp_path / store).parent.mkdir(parents=True, exist_ok=True)
        make_store(tmp_path / store, x, np.tanh(x), chunk_rows=64, attrs={"layer": 1})
    write_token_store(tmp_path / "results/tokens/tiny/train.zarr", [np.arange(9, dtype=np.int32)], {})
    partial = partial_path(tmp_path / "results/activations/tiny/layer2/train.zarr")
    create_store(partial, 300, 8, 64, {})
    commit_rows(partial, 64)
    return tmp_path


def test_an_intact_run_verifies(run):
    done = verify(run)  # no PATH: results/
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:4]] == [
        ["ok", STORES["train"]],
        ["ok", STORES["validation"]],
        ["ok", STORES["gaussian"]],
        ["ok", "results/tokens/tiny/train.zarr"],
    ]
    assert "(10 chunks, sizes and CRC-32 checked" in lines[0]
    assert lines[4].startswith("partial  results/activations/tiny/layer2/train.zarr.partial (an interrupted job's")
    assert lines[5] == "4 finished stores checked, 0 damaged"


def test_deleted_and_truncated_chunks_are_found_without_training(run):
    (run / STORES["train"] / "x" / "c" / "2" / "0").unlink()
    os.truncate(run / STORES["gaussian"] / "y" / "c" / "4" / "0", 7)
    before = files(run)
    done = verify(run, "results")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(
        f"DAMAGED  {STORES['train']}: array 'x', chunk x/c/2/0 (rows 128-191) is missing. Rebuild it: "
        f"`snakemake --cores 1 --force {STORES['train']}` (rule capture_activations), with the run's --configfile"
    )
    assert lines[1].startswith(f"ok       {STORES['validation']} ")
    assert lines[2].startswith(f"DAMAGED  {STORES['gaussian']}: array 'y', chunk y/c/4/0 (rows 256-299) has 7 bytes, ")
    assert f"--force {STORES['gaussian']}` (rule sample_gaussian)" in lines[2]
    assert lines[-1] == "4 finished stores checked, 2 damaged"
    assert files(run) == before  # nothing written, nothing touched

    one = verify(run, STORES["validation"])  # a store of its own
    assert one.returncode == 0 and one.stdout.splitlines()[-1] == "1 finished store checked, 0 damaged"


def test_a_store_that_cannot_be_opened_is_damaged(run):
    manifest = run / STORES["validation"] / "manifest.json"
    manifest.unlink()  # as a store written before manifests
    (run / STORES["validation"] / "x" / "zarr.json").write_text("{")
    done = verify(run, STORES["validation"])
    assert done.returncode == 1
    assert done.stdout.startswith(f"DAMAGED  {STORES['validation']}: cannot be opened (")


@pytest.mark.parametrize(("path", "message"), [("nowhere", "'nowhere': no such file or folder"), (".", "no store")])
def test_nothing_to_verify_is_an_error(tmp_path, path, message):
    done = verify(tmp_path, path)  # an empty folder
    assert done.returncode == 2 and "secret-moe verify: error: " + message in done.stderr, done.stderr
