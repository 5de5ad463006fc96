"""The distillation steps: a bundle writes one folder per run, byte-reproducibly; collect_run moves it out."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from secret_moe.errors import SecretMoeError
from secret_moe.layout import TIMING_FILE, member_dir
from secret_moe.provenance import read_json
from secret_moe.steps.collect import collect_run
from secret_moe.steps.distill import train_students

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


def test_a_checkpointed_bundle_writes_the_same_bytes_and_removes_its_checkpoint(stores, tmp_path, caplog):
    members = runs("mlp_h4", "moe_lowrank_r4_m16_s2_k2")
    train(stores, tmp_path / "plain", members)
    checkpoint = tmp_path / "checkpoints" / "bundle.pt"
    with caplog.at_level(logging.INFO):
        train_students(
            *stores,
            str(tmp_path / "saved"),
            runs=members,
            distill=DISTILL,
            seed=0,
            device="cpu",
            threads=1,
            checkpoint=str(checkpoint),
            checkpoint_minutes=0,
        )
    assert "checkpoint after 2 epochs written" in caplog.text  # one after every epoch
    assert not checkpoint.exists() and list(checkpoint.parent.iterdir()) == []
    for run in members:
        for name in ("metrics.json", "student.safetensors"):
            plain = member_dir(tmp_path / "plain", run) / name
            assert plain.read_bytes() == (member_dir(tmp_path / "saved", run) / name).read_bytes()


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


@pytest.fixture
def stores_with_kinds(tmp_path, make_store):
    """Stores of token positions: rows carry kinds (a quarter are pads, near one point)."""
    teacher = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.GELU(), torch.nn.Linear(16, D))
    paths = []
    for split, rows in (("train", 512), ("validation", 128)):
        rng = np.random.default_rng(len(paths))
        kinds = rng.permutation(np.repeat(np.array([0, 1, 2], dtype=np.uint8), [rows // 2, rows // 4, rows // 4]))
        x = rng.standard_normal((rows, D)).astype(np.float32)
        x[kinds == 2] = 2.0
        with torch.no_grad():
            y = teacher(torch.from_numpy(x)).numpy()
        attrs = {"layer": 1, "model_id": "tiny", "rows": "positions", "capture_config": {}}
        paths.append(
            str(make_store(tmp_path / f"{split}.zarr", x, y, chunk_rows=64, attrs=attrs, rows={"kind": kinds}))
        )
    return paths


def test_metrics_split_the_fvu_by_row_kind_and_report_router_usage(stores_with_kinds, tmp_path):
    members = runs("mlp_h4", "moe_lowrank_r4_m16_s2_k2")
    train(stores_with_kinds, tmp_path / "bundle", members)
    for run in members:
        metrics = read_json(member_dir(tmp_path / "bundle", run) / "metrics.json")
        by_kind = metrics["by_kind"]
        assert set(by_kind) == {"token", "special", "pad"}
        assert [by_kind[k]["rows"] for k in ("token", "special", "pad")] == [64, 32, 32]
        # the best epoch's parts recombine into the best FVU
        recombined = sum(part["variance_share"] * part["fvu"] for part in by_kind.values())
        assert recombined == pytest.approx(metrics["best_fvu"], rel=1e-9)
        assert by_kind["pad"]["fvu_own"] is None  # identical pad rows: no variance of their own
        best = metrics["history"][metrics["best_epoch"] - 1]
        assert {best[f"val_fvu_{k}"] for k in by_kind} == {part["fvu"] for part in by_kind.values()}
        if run["student"].startswith("moe"):
            usage = metrics["router_usage"]
            assert set(usage) == {"token", "special", "pad", "all"}
            assert usage["pad"]["distinct_experts"] == 2  # identical pad rows: the same k = 2 experts
            assert usage["all"]["rows"] == 128
        else:
            assert metrics["router_usage"] is None


def test_stores_of_samples_have_no_split_by_kind(stores, tmp_path):
    members = runs("moe_lowrank_r4_m16_s2_k2")
    train(stores, tmp_path / "bundle", members)
    metrics = read_json(member_dir(tmp_path / "bundle", members[0]) / "metrics.json")
    assert metrics["by_kind"] is None and not any(k.startswith("val_fvu_") for k in metrics["history"][0])
    assert set(metrics["router_usage"]) == {"all"}


def test_an_activation_store_written_before_row_kinds_is_refused_by_name(tmp_path, make_store):
    x = np.random.default_rng(0).standard_normal((128, D)).astype(np.float32)
    attrs = {"layer": 1, "model_id": "tiny", "capture_config": {"batch_tokens": 512}}  # what capture wrote then
    paths = [str(make_store(tmp_path / f"{split}.zarr", x, x, 64, attrs)) for split in ("train", "validation")]
    with pytest.raises(SecretMoeError, match="no row provenance") as error:
        train(paths, tmp_path / "bundle", runs("mlp_h4"))
    assert paths[1] in str(error.value) and "rerun snakemake" in str(error.value)
