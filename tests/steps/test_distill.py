"""The distillation steps: a bundle writes one folder per run, byte-reproducibly; collect_run moves it out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from secret_moe.errors import SecretMoeError
from secret_moe.layout import TIMING_FILE
from secret_moe.provenance import read_json
from secret_moe.steps.distill import collect_run, member_dir, train_students

D = 8
DISTILL = {"batch_size": 64, "group_chunks": 2, "in_memory": True}


@pytest.fixture
def stores(tmp_path, make_store):
    teacher = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.GELU(), torch.nn.Linear(16, D))
    paths = []
    for split, rows in (("train", 512), ("validation", 128)):
        x = np.random.default_rng(len(paths)).standard_normal((rows, D)).astype(np.float32)
        with torch.no_grad():
            y = teacher(torch.from_numpy(x)).numpy()
        attrs = {"layer": 1, "model_id": "tiny"}
        paths.append(str(make_store(tmp_path / f"{split}.zarr", x, y, chunk_rows=64, attrs=attrs)))
    return paths


def runs(*students, lr=3e-3, epochs=2):
    return [
        {"model": "tiny", "layer": 1, "data": "activations", "student": s, "epochs": epochs, "lr": lr, "seed": 0}
        for s in students
    ]


def train(stores, folder, members):
    train_students(*stores, str(folder), runs=members, distill=DISTILL, seed=0, device="cpu", threads=1)


def test_two_runs_of_the_same_config_write_identical_metrics_and_weights(stores, tmp_path):
    members = runs("mlp_h4", "moe_lowrank_r4_m16_s2_k2")
    train(stores, tmp_path / "first", members)
    train(stores, tmp_path / "second", members)
    for run in members:
        first, second = member_dir(tmp_path / "first", run), member_dir(tmp_path / "second", run)
        for name in ("metrics.json", "student.safetensors"):
            assert (first / name).read_bytes() == (second / name).read_bytes(), (run["student"], name)
        metrics = read_json(first / "metrics.json")
        assert metrics["student"] == run["student"] and len(metrics["history"]) == 2
        assert metrics["provenance"]["config"] == {"distill": DISTILL, "seed": 0}
        timing = read_json(first / TIMING_FILE)  # wall-clock numbers and the bundle live beside, not inside
        assert timing["bundle_size"] == 2 and timing["bundle"] == "first" and timing["wall_seconds"] > 0


def test_a_run_trained_alone_equals_the_same_run_in_a_bundle(stores, tmp_path):
    train(stores, tmp_path / "bundle", runs("mlp_h4", "mlp_h8", "moe_lowrank_r4_m16_s2_k2"))
    train(stores, tmp_path / "alone", runs("mlp_h8"))
    (run,) = runs("mlp_h8")
    bundled, alone = (
        read_json(member_dir(tmp_path / "bundle", run) / "metrics.json"),
        read_json(member_dir(tmp_path / "alone", run) / "metrics.json"),
    )
    assert bundled == alone


def test_a_bundle_refuses_runs_of_different_budgets(stores, tmp_path):
    with pytest.raises(SecretMoeError, match="one store, seed and epochs"):
        train(stores, tmp_path / "mixed", runs("mlp_h4") + runs("mlp_h8", epochs=3))


def test_collect_run_copies_one_run_out(stores, tmp_path):
    members = runs("mlp_h4", "mlp_h8")
    train(stores, tmp_path / "bundle", members)
    out = tmp_path / "run"
    out.mkdir()
    collect_run(str(tmp_path / "bundle"), members[1], str(out / "metrics.json"), str(out / "student.safetensors"))
    source = member_dir(tmp_path / "bundle", members[1])
    for name in ("metrics.json", "student.safetensors", TIMING_FILE):
        assert (out / name).read_bytes() == (source / name).read_bytes()
    with pytest.raises(SecretMoeError, match="holds no results for run tiny/1/activations/mlp_h16"):
        collect_run(str(tmp_path / "bundle"), runs("mlp_h16")[0], str(out / "m.json"), str(out / "w.safetensors"))
