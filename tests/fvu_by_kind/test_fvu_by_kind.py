"""FVU by row kind on hand-made stores: the per-kind sums equal numpy's, the per-kind parts recombine exactly
into the all-rows FVU, kinds follow shuffled batches, and router usage counts what the router picked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from secret_moe.batches import ActivationBatches, output_variance
from secret_moe.fvu_by_kind import batch_kinds, kind_report, kind_split, router_usage
from secret_moe.rows import PAD, ROW_KINDS, SPECIAL, TOKEN
from secret_moe.store import open_store
from secret_moe.students import build_student, parse_student
from secret_moe.students.mlp import MLPConfig, MLPStudent
from secret_moe.train import TrainConfig, evaluate, fit, squared_errors

D = 8
ROWS = 600


@pytest.fixture
def kinds_N():
    """Mostly tokens, a few special rows, a third padding, in a scrambled order."""
    kinds = np.array([TOKEN] * 360 + [SPECIAL] * 40 + [PAD] * 200, dtype=np.uint8)
    return np.random.default_rng(5).permutation(kinds)


@pytest.fixture
def store(tmp_path, make_store, kinds_N):
    """y = a fixed nonlinear map of x; pad rows sit near one point far from the tokens (as padded positions do),
    and x's first column holds the row index so a test can tell rows apart."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((ROWS, D))
    x[kinds_N == PAD] = 3.0 + 0.1 * rng.standard_normal(((kinds_N == PAD).sum(), D))
    y = np.tanh(x @ rng.standard_normal((D, D))) + 0.5 * x
    x[:, 0] = np.arange(ROWS)
    return open_store(make_store(tmp_path / "val.zarr", x, y, chunk_rows=64, rows={"kind": kinds_N}))


def loader(group, shuffle=False, in_memory=True):
    return ActivationBatches(group, 50, shuffle=shuffle, seed=1, group_chunks=2, in_memory=in_memory, device="cpu")


def test_kind_split_sums_equal_numpy(store, kinds_N):
    y = store["y"][:].astype(np.float64)
    split = kind_split(loader(store), store["kind"][:])
    mean = y.mean(axis=0)
    for code in range(len(ROW_KINDS)):
        mine = y[kinds_N == code]
        assert split.rows_K[code] == len(mine)
        assert split.spread_K()[code] == pytest.approx(((mine - mean) ** 2).sum(), rel=1e-9)
        assert split.own_spread_K()[code] == pytest.approx(((mine - mine.mean(axis=0)) ** 2).sum(), rel=1e-9)
    assert split.variance() == pytest.approx(float(np.mean(np.var(y, axis=0))), rel=1e-9)
    assert split.variance() == pytest.approx(output_variance(loader(store)), rel=1e-9)


@pytest.mark.parametrize("in_memory", [True, False])
def test_batch_kinds_follow_shuffled_batches(store, kinds_N, in_memory):
    batches = loader(store, shuffle=True, in_memory=in_memory)
    seen = 0
    for (x_BD, _), kind_B in zip(batches.epoch(), batch_kinds(batches, kinds_N), strict=True):
        rows = x_BD[:, 0].long().numpy()  # the row index written into x
        assert np.array_equal(kind_B.numpy(), kinds_N[rows])
        seen += len(rows)
    assert seen == ROWS


def test_per_kind_parts_recombine_exactly_into_the_all_rows_fvu(store, kinds_N):
    val = loader(store)
    split = kind_split(val, kinds_N)
    torch.manual_seed(0)
    student = MLPStudent(MLPConfig(D, 4))
    result = fit(student, loader(store, shuffle=True), val, TrainConfig(2, 1e-2, "by-kind"), split.variance(), split)
    for record, report in zip(result["history"], result["by_kind"], strict=True):
        assert set(report) == set(ROW_KINDS)
        fvu = record["val_fvu"]
        assert sum(part["variance_share"] * part["fvu"] for part in report.values()) == pytest.approx(fvu, rel=1e-9)
        assert sum(part["error_share"] for part in report.values()) == pytest.approx(1.0, rel=1e-12)
        assert sum(part["variance_share"] for part in report.values()) == pytest.approx(1.0, rel=1e-12)
        assert sum(part["error_share"] * fvu for part in report.values()) == pytest.approx(fvu, rel=1e-12)
        assert {record[f"val_fvu_{kind}"] for kind in ROW_KINDS} == {part["fvu"] for part in report.values()}
    # the last report, recomputed from the student's predictions with numpy
    with torch.no_grad():
        error = ((student(torch.from_numpy(store["x"][:])).numpy() - store["y"][:]) ** 2).astype(np.float64)
    y = store["y"][:].astype(np.float64)
    for code, kind in enumerate(ROW_KINDS):
        mine = kinds_N == code
        part = result["by_kind"][-1][kind]
        assert part["rows"] == mine.sum()
        assert part["mse"] == pytest.approx(error[mine].mean(), rel=1e-5)
        assert part["fvu_own"] == pytest.approx(error[mine].mean() / np.var(y[mine], axis=0).mean(), rel=1e-5)
        assert part["error_share"] == pytest.approx(error[mine].sum() / error.sum(), rel=1e-5)
    # pads sit near one point: little of their own variance, much of the all-rows variance
    pad = result["by_kind"][-1]["pad"]
    assert pad["variance_share"] > pad["rows"] / ROWS


def test_squared_errors_add_up_to_the_all_rows_error(store, kinds_N):
    students = [MLPStudent(MLPConfig(D, 4)), MLPStudent(MLPConfig(D, 8))]
    val = loader(store)
    by_kind = squared_errors(students, val, kinds_N)
    assert by_kind.shape == (2, len(ROW_KINDS))
    for student, errors_K in zip(students, by_kind, strict=True):
        assert errors_K.sum() / (ROWS * D) == pytest.approx(evaluate(student, val), rel=1e-12)
    report = kind_report(by_kind[0], kind_split(val, kinds_N))
    assert [part["rows"] for part in report.values()] == [360, 40, 200]


def test_router_usage_counts_the_experts_each_kind_picks(store, kinds_N):
    torch.manual_seed(0)
    student = build_student(parse_student("moe_lowrank_r4_m32_s2_k4"), D)
    x = store["x"][:]
    usage = router_usage(student, loader(store), kinds_N)
    assert set(usage) == {*ROW_KINDS, "all"}
    assert [usage[kind]["rows"] for kind in (*ROW_KINDS, "all")] == [360, 40, 200, ROWS]
    for part in usage.values():
        assert 4 <= part["distinct_experts"] <= 32 and 0 < part["top_experts_share"] <= 1
    # the counts, from the router's own selections
    with torch.no_grad():
        _, idx = student.router(torch.from_numpy(x))
    for code, kind in enumerate(ROW_KINDS):
        assert usage[kind]["distinct_experts"] == len(np.unique(idx[kinds_N == code].numpy()))
    assert router_usage(student, loader(store), kinds_N, top=32)["pad"]["top_experts_share"] == pytest.approx(1.0)
    assert set(router_usage(student, loader(store), None)) == {"all"}  # a Gaussian store: all rows only


def test_identical_rows_use_only_k_experts(tmp_path, make_store):
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.standard_normal((100, D)), np.ones((60, D))])
    kinds = np.array([TOKEN] * 100 + [PAD] * 60, dtype=np.uint8)
    group = open_store(make_store(tmp_path / "same.zarr", x, x, chunk_rows=32, rows={"kind": kinds}))
    torch.manual_seed(0)
    student = build_student(parse_student("moe_lowrank_r4_m32_s2_k4"), D)
    usage = router_usage(student, loader(group), kinds, top=4)
    assert usage["pad"]["distinct_experts"] == 4 and usage["pad"]["top_experts_share"] == pytest.approx(1.0)
    assert usage["token"]["distinct_experts"] > 4


@pytest.mark.cuda
def test_the_split_on_cuda_equals_the_split_on_cpu(store, kinds_N):
    reports, usages = {}, {}
    for device in ("cpu", "cuda"):
        val = ActivationBatches(store, 50, shuffle=False, seed=1, group_chunks=2, in_memory=True, device=device)
        torch.manual_seed(0)
        student = build_student(parse_student("moe_lowrank_r4_m32_s2_k4"), D).to(device)
        reports[device] = kind_report(squared_errors([student], val, kinds_N)[0], kind_split(val, kinds_N))
        usages[device] = router_usage(student, val, kinds_N)
    for kind, part in reports["cpu"].items():
        for key, value in part.items():
            assert reports["cuda"][kind][key] == pytest.approx(value, rel=1e-4), (kind, key)
    assert {k: u["rows"] for k, u in usages["cuda"].items()} == {k: u["rows"] for k, u in usages["cpu"].items()}
