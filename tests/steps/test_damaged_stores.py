"""The steps that read a store's rows refuse a damaged one before they compute anything: training
(`train_students`), the Gaussian fit (`fit_gaussian`) and the layer statistics (`describe_inputs`), each on a real
store with a real chunk file deleted or truncated."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from secret_moe.errors import StoreDamagedError
from secret_moe.steps.distill import train_students
from secret_moe.steps.gaussian import fit_gaussian
from secret_moe.steps.scan import describe_inputs

D = 8
RUN = {"model": "tiny", "layer": 1, "data": "activations", "student": "mlp_h4", "epochs": 1, "lr": 3e-3, "seed": 0}
DISTILL = {"batch_size": 64, "group_chunks": 2, "in_memory": True}


@pytest.fixture
def stores(tmp_path, make_store, monkeypatch) -> dict[str, Path]:
    """The train and validation stores of a run, where the workflow puts them, the run's folder as the current one."""
    monkeypatch.chdir(tmp_path)
    teacher = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.GELU(), torch.nn.Linear(16, D))
    paths = {}
    for seed, (split, rows) in enumerate((("train", 512), ("validation", 128))):
        x = np.random.default_rng(seed).standard_normal((rows, D)).astype(np.float32)
        with torch.no_grad():
            y = teacher(torch.from_numpy(x)).numpy()
        path = Path(f"results/activations/tiny/layer1/{split}.zarr")
        path.parent.mkdir(parents=True, exist_ok=True)
        paths[split] = make_store(path, x, y, chunk_rows=64, attrs={"layer": 1, "model_id": "tiny"})
    return paths


def damage(store: Path, how: str) -> str:
    """Delete or truncate chunk 1 of x; returns the words the error must say."""
    chunk = store / "x" / "c" / "1" / "0"
    if how == "deleted":
        chunk.unlink()
        return "array 'x', chunk x/c/1/0 (rows 64-127) is missing"
    written = chunk.stat().st_size
    os.truncate(chunk, written - 100)
    return f"array 'x', chunk x/c/1/0 (rows 64-127) has {written - 100:,} bytes, {written:,} were written"


@pytest.mark.parametrize("how", ["deleted", "truncated"])
@pytest.mark.parametrize("split", ["train", "validation"])
def test_training_refuses_a_damaged_store_before_it_trains(stores, tmp_path, how, split):
    words = damage(stores[split], how)
    bundle = tmp_path / "bundle"
    with pytest.raises(StoreDamagedError) as error:
        train_students(
            *map(str, stores.values()), str(bundle), runs=[RUN], distill=DISTILL, seed=0, device="cpu", threads=1
        )
    assert f"store '{stores[split]}' is damaged: {words}" in str(error.value)
    assert f"snakemake --cores 1 --force {stores[split]}` (rule capture_activations)" in str(error.value)
    assert not bundle.exists()  # nothing was trained or written


@pytest.mark.parametrize("how", ["deleted", "truncated"])
def test_the_gaussian_fit_refuses_a_damaged_store(stores, tmp_path, how):
    words = damage(stores["train"], how)
    with pytest.raises(StoreDamagedError) as error:
        fit_gaussian(str(stores["train"]), str(tmp_path / "moments.npz"), block_rows=100)
    assert words in str(error.value)
    assert not (tmp_path / "moments.npz").exists()


def test_the_statistics_refuse_a_damaged_twin(stores, tmp_path, make_store):
    twin = Path("results/gaussian/tiny/layer1/train.zarr")
    twin.parent.mkdir(parents=True)
    x = np.random.default_rng(5).standard_normal((512, D))
    make_store(twin, x, x, chunk_rows=64, attrs={"layer": 1, "rows": "samples"})
    (twin / "y" / "c" / "7" / "0").unlink()
    with pytest.raises(StoreDamagedError) as error:
        describe_inputs(str(stores["train"]), str(twin), str(tmp_path / "s.csv"), projections=4, block_rows=100, seed=0)
    assert "array 'y', chunk y/c/7/0 (rows 448-511) is missing" in str(error.value)
    assert f"--force {twin}` (rule sample_gaussian)" in str(error.value)
    assert not (tmp_path / "s.csv").exists()
