"""gaussian.draw_per_seed through the real Snakefile: each training seed trains and validates on a Gaussian sample of
its own, and every run records which."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from secret_moe.layout import path
from secret_moe.testing import run_snakemake, tiny_project, write_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = tmp_path_factory.mktemp("draws")
    config = tiny_project(project, {"train": 200, "validation": 60}, experiments={})
    config["gaussian"]["draw_per_seed"] = True
    config["distill"] |= {"epochs": 1, "learning_rates": [0.003], "seeds": [0, 1], "mlp_widths": [4, 16]}
    write_config(project / "config.yaml", config)
    table = path("table", name="runs")
    run_snakemake(project / "work", table, "--cores", "2", configfile=project / "config.yaml", check=True)
    return project / "work"


def store(work, split, draw=None):
    kind, extra = ("gaussian", {}) if draw is None else ("gaussian_draw", {"draw": draw})
    return work / path(kind, model="tiny", layer=1, split=split, **extra)


def test_each_seed_draws_its_own_gaussian_sample_and_no_shared_one_is_made(project):
    for split in ("train", "validation"):
        first, second = (zarr.open_group(store(project, split, draw), mode="r") for draw in (0, 1))
        assert first["x"].shape == second["x"].shape
        assert not np.array_equal(first["x"][:], second["x"][:])  # other points ...
        assert first.attrs["seed"] != second.attrs["seed"]  # ... from another seed, recorded
        assert (store(project, split, 0) / "manifest.json").is_file()  # sealed and verified like every store
    assert not store(project, "train").exists()  # nothing here reads the shared sample


def test_every_gaussian_run_records_the_draw_it_trained_on(project):
    recorded = {}
    for metrics in (project / "results/distill/tiny/layer1/gaussian").rglob("metrics.json"):
        run = json.loads(metrics.read_text())
        recorded.setdefault(run["seed"], set()).add(run["provenance"]["inputs"]["train"])
    # one fingerprint per seed (every student of a seed read the same store), a different one for each seed
    assert sorted(recorded) == [0, 1] and all(len(prints) == 1 for prints in recorded.values())
    assert recorded[0] != recorded[1]
