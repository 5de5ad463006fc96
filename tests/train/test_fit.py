"""Distillation: a perfect student scores FVU 0, real steps reduce the loss, a diverging run fails by name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from secret_moe.batches import ActivationBatches, output_variance
from secret_moe.errors import ConfigError, NonFiniteLossError
from secret_moe.models.teacher import TeacherConfig, TeacherMLP
from secret_moe.precision import MixedPrecision
from secret_moe.schedule import Schedule
from secret_moe.store import open_store
from secret_moe.students import build_student, parse_student
from secret_moe.students.mlp import MLPConfig, MLPStudent
from secret_moe.students.optim import make_optimizer
from secret_moe.train import TrainConfig, _train_step, evaluate, evaluate_many, fit, fit_together

D = 8


@pytest.fixture
def gelu_teacher():
    torch.manual_seed(1)
    teacher = TeacherMLP(TeacherConfig(d_model=D, d_hidden=16, gated=False, activation="gelu", bias=True))
    with torch.no_grad():
        for p in teacher.parameters():
            p.mul_(3)  # outputs of order one
    return teacher.eval()


def teacher_store(path, make_store, teacher, rows, seed, x=None):
    if x is None:
        x = np.random.default_rng(seed).standard_normal((rows, D)).astype(np.float32)
    with torch.no_grad():
        y = teacher(torch.from_numpy(x)).numpy()
    return open_store(make_store(path, x, y, chunk_rows=256))


def loader(group, shuffle=True):
    return ActivationBatches(group, 128, shuffle=shuffle, seed=0, group_chunks=2, in_memory=True, device="cpu")


@pytest.fixture
def stores(tmp_path, make_store, gelu_teacher):
    train = teacher_store(tmp_path / "train.zarr", make_store, gelu_teacher, 2048, seed=0)
    val = teacher_store(tmp_path / "val.zarr", make_store, gelu_teacher, 512, seed=1)
    return loader(train), loader(val, shuffle=False)


def test_a_student_equal_to_the_teacher_has_fvu_zero(stores, gelu_teacher):
    train, val = stores
    student = MLPStudent(MLPConfig(D, 16))
    with torch.no_grad():
        student.up.weight.copy_(gelu_teacher.up.weight)
        student.up.bias.copy_(gelu_teacher.up.bias)
        student.down.weight.copy_(gelu_teacher.down.weight)
        student.down.bias.copy_(gelu_teacher.down.bias)
    variance = output_variance(val)
    assert variance > 0.1
    assert evaluate(student, val) < 1e-12
    # ... while an untrained student of the same shape does not
    assert evaluate(MLPStudent(MLPConfig(D, 16)), val) / variance > 0.05
    # fitting at a tiny learning rate keeps it at FVU ~ 0 in every epoch
    result = fit(student, train, val, TrainConfig(2, 1e-9, "perfect"), variance)
    assert [h["epoch"] for h in result["history"]] == [1, 2]
    assert all(h["val_fvu"] < 1e-9 for h in result["history"])


def test_evaluate_is_the_mean_squared_error_over_rows_and_dimensions(stores):
    _, val = stores
    student = MLPStudent(MLPConfig(D, 4))
    x = torch.from_numpy(val.x[:])
    y = torch.from_numpy(val.y[:])
    with torch.no_grad():
        expected = (student(x) - y).double().pow(2).mean().item()
    assert evaluate(student, val) == pytest.approx(expected, rel=1e-6)
    assert student.training  # evaluate puts the student back into training mode


@pytest.mark.parametrize("name", ["mlp_h16", "moe_lowrank_r4_m16_s4_k4", "moe_fullrank_m16_s0_k4"])
def test_training_steps_reduce_the_loss(stores, name):
    train, val = stores
    torch.manual_seed(0)
    student = build_student(parse_student(name), D)
    variance = output_variance(val)
    before = evaluate(student, val) / variance
    initial = {k: v.clone() for k, v in student.state_dict().items()}
    result = fit(student, train, val, TrainConfig(8, 1e-2, name), variance)
    fvus = [h["val_fvu"] for h in result["history"]]
    assert len(fvus) == 8
    assert fvus[-1] < 0.5 * before
    assert result["history"][-1]["train_mse"] < result["history"][0]["train_mse"]
    assert result["samples_per_second"] > 0 and result["seconds"] > 0
    changed = [k for k, v in student.state_dict().items() if not torch.equal(v, initial[k])]
    assert changed == list(initial)  # every parameter moved


def test_nan_from_a_huge_learning_rate_names_the_run(stores):
    train, val = stores
    torch.manual_seed(0)
    student = MLPStudent(MLPConfig(D, 16))
    with pytest.raises(NonFiniteLossError, match="tiny/1/activations/mlp_h16/1e30/0"):
        fit(student, train, val, TrainConfig(3, 1e30, "tiny/1/activations/mlp_h16/1e30/0"), output_variance(val))


def test_infinite_inputs_name_the_run(tmp_path, make_store, gelu_teacher, stores):
    _, val = stores
    x = np.random.default_rng(2).standard_normal((512, D)).astype(np.float32)
    x[300, 3] = np.inf
    bad = loader(teacher_store(tmp_path / "bad.zarr", make_store, gelu_teacher, 512, seed=2, x=x))
    with pytest.raises(NonFiniteLossError, match="run bad-run: training loss became nan") as error:
        fit(MLPStudent(MLPConfig(D, 4)), bad, val, TrainConfig(1, 1e-3, "bad-run"), 1.0)
    assert "epoch 1" in str(error.value)


def test_nonfinite_validation_loss_names_the_run(tmp_path, make_store, gelu_teacher, stores):
    train, _ = stores
    x = np.random.default_rng(3).standard_normal((256, D)).astype(np.float32)
    x[5, 0] = np.nan
    bad_val = loader(teacher_store(tmp_path / "badval.zarr", make_store, gelu_teacher, 256, seed=3, x=x), shuffle=False)
    with pytest.raises(NonFiniteLossError, match="run val-run: validation loss"):
        fit(MLPStudent(MLPConfig(D, 4)), train, bad_val, TrainConfig(1, 1e-3, "val-run"), 1.0)


@pytest.mark.parametrize(("epochs", "lr"), [(0, 1e-3), (1, 0.0), (1, -1.0), (1, math.nan)])
def test_bad_train_config_is_refused(epochs, lr):
    with pytest.raises(ValueError, match="run r"):
        TrainConfig(epochs, lr, "r")


def test_students_trained_together_match_students_trained_alone(stores):
    """A bundle gives each student exactly the updates it gets alone: same histories, same weights."""
    train, val = stores
    variance = output_variance(val)
    names, lrs = ["mlp_h16", "moe_lowrank_r4_m16_s4_k4", "mlp_h4"], [1e-2, 3e-3, 1e-2]

    def build(name):
        torch.manual_seed(7)
        return build_student(parse_student(name), D)

    alone = []
    for name, lr in zip(names, lrs, strict=True):
        student = build(name)
        alone.append((fit(student, train, val, TrainConfig(3, lr, name), variance), student))
    students = [build(name) for name in names]
    configs = [TrainConfig(3, lr, name) for name, lr in zip(names, lrs, strict=True)]
    together = fit_together(students, train, val, configs, variance)
    for (single, single_student), joint, joint_student in zip(alone, together, students, strict=True):
        assert joint["history"] == single["history"]
        for key, value in single_student.state_dict().items():
            assert torch.equal(value, joint_student.state_dict()[key]), key
    assert evaluate_many(students, val) == [evaluate(s, val) for s in students]
    # the students really differ from one another (a bundle is not one student copied)
    assert len({round(r["history"][-1]["val_fvu"], 6) for r in together}) == 3


def test_students_trained_together_need_one_budget(stores):
    train, val = stores
    students = [MLPStudent(MLPConfig(D, 4)), MLPStudent(MLPConfig(D, 8))]
    with pytest.raises(ValueError, match=r"same epochs, got \[1, 2\]"):
        fit_together(students, train, val, [TrainConfig(1, 1e-3, "a"), TrainConfig(2, 1e-3, "b")], 1.0)


@pytest.mark.cuda
def test_training_on_cuda_reduces_the_loss(tmp_path, make_store, gelu_teacher):
    train_group = teacher_store(tmp_path / "train.zarr", make_store, gelu_teacher, 2048, seed=0)
    val_group = teacher_store(tmp_path / "val.zarr", make_store, gelu_teacher, 512, seed=1)
    kwargs = {"seed": 0, "group_chunks": 2, "in_memory": True, "device": "cuda"}
    train = ActivationBatches(train_group, 128, shuffle=True, **kwargs)
    val = ActivationBatches(val_group, 128, shuffle=False, **kwargs)
    torch.manual_seed(0)
    student = build_student(parse_student("moe_lowrank_r4_m16_s4_k4"), D).cuda()
    variance = output_variance(val)
    before = evaluate(student, val) / variance
    result = fit(student, train, val, TrainConfig(8, 1e-2, "cuda-run"), variance)
    assert result["history"][-1]["val_fvu"] < 0.5 * before


def _weights(student):
    return {k: v.clone() for k, v in student.state_dict().items()}


def _fresh(name, seed=3):
    torch.manual_seed(seed)
    return build_student(parse_student(name), D)


@pytest.mark.parametrize("name", ["mlp_h16", "moe_lowrank_r4_m8_s2_k2"])
def test_wsd_ladder_rungs_equal_runs_trained_for_each_budget_alone(stores, name):
    """Cooldown branches train copies: the trunk's student ends bit-identical to one trained without branches,
    and every rung's history is that of a run trained for that budget alone."""
    train, val = stores
    variance = output_variance(val)
    ladder = Schedule(kind="wsd", warmup_epochs=1, cooldown_fraction=0.25, rungs=3)
    laddered = _fresh(name)
    result = fit(laddered, train, val, TrainConfig(8, 3e-3, "ladder"), variance, schedule=ladder)
    assert [rung["epochs"] for rung in result["rungs"]] == [2, 4, 8]
    for rung in result["rungs"]:
        alone = _fresh(name)
        single = Schedule(kind="wsd", warmup_epochs=1, cooldown_fraction=0.25, rungs=1)
        expected = fit(alone, train, val, TrainConfig(rung["epochs"], 3e-3, "alone"), variance, schedule=single)
        assert rung["history"] == expected["history"]
        if rung["epochs"] == 8:
            assert result["history"] == expected["history"]
            trained, reference = _weights(laddered), _weights(alone)
            assert all(torch.equal(trained[k], reference[k]) for k in reference)
    # the branches really cooled down: the rate at the end of each rung reached zero, so the shorter rungs
    # differ from the trunk's history at the same epoch
    assert result["rungs"][0]["history"][-1]["val_fvu"] != result["history"][1]["val_fvu"]


def test_a_cosine_run_is_unchanged_by_the_schedule_argument(stores):
    train, val = stores
    variance = output_variance(val)
    a, b = _fresh("mlp_h16"), _fresh("mlp_h16")
    first = fit(a, train, val, TrainConfig(3, 3e-3, "a"), variance)
    second = fit(b, train, val, TrainConfig(3, 3e-3, "b"), variance, schedule=Schedule(kind="cosine"))
    assert first["history"] == second["history"] and "rungs" not in first
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# Mixed precision (`distill.precision`): the tolerance on the FVU after 8 epochs at these tiny sizes.  bfloat16
# keeps 8 bits of mantissa, so each forward is off by ~0.4% relative; over 8 epochs of 16 steps the runs
# drift apart by a few thousandths of FVU (measured: at most 0.0015 here), far below the gaps between students.
FVU_TOLERANCE = 0.01


def precision_fvus(stores, name: str, precisions: list[str], device: str = "cpu") -> dict[str, dict]:
    train, val = stores
    variance = output_variance(val)
    results = {}
    for precision in precisions:
        torch.manual_seed(0)
        student = build_student(parse_student(name), D).to(device)
        result = fit(student, train, val, TrainConfig(8, 1e-2, name, precision), variance)
        results[precision] = {"fvu": result["history"][-1]["val_fvu"], "state": student.state_dict()}
    return results


@pytest.mark.parametrize("name", ["mlp_h16", "moe_lowrank_r4_m16_s4_k4", "moe_fullrank_m16_s0_k4"])
def test_autocast_reaches_the_fvu_of_float32(stores, name):
    """bfloat16 and float16 autocast (float16 with its gradient scaler) train on a CPU to float32's FVU,
    within FVU_TOLERANCE, while really computing in the lower precision (the weights differ)."""
    results = precision_fvus(stores, name, ["float32", "bfloat16", "float16"])
    reference = results["float32"]
    assert reference["fvu"] < 0.5
    for precision in ("bfloat16", "float16"):
        assert results[precision]["fvu"] == pytest.approx(reference["fvu"], abs=FVU_TOLERANCE), precision
        state = results[precision]["state"]
        assert all(v.dtype == torch.float32 for v in state.values())  # parameters stay float32
        assert any(not torch.equal(v, reference["state"][k]) for k, v in state.items()), precision


def test_float16_skips_a_step_whose_scaled_gradients_overflow():
    """The gradient scaler: a loss whose scaled gradients overflow float16 leaves the weights as they were and
    halves the scale; float32 takes the same step."""
    torch.manual_seed(0)
    student = MLPStudent(MLPConfig(D, 4))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    x, y = torch.randn(64, D), torch.full((64, D), 3e4)
    amp = MixedPrecision.of("float16", "cpu")
    scale = amp.scaler.get_scale()
    _train_step(student, make_optimizer(student, 1e-3), x, y, amp)
    assert amp.scaler.get_scale() == scale / 2
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())
    _train_step(student, make_optimizer(student, 1e-3), x, y, MixedPrecision.of("float32", "cpu"))
    assert all(not torch.equal(v, before[k]) for k, v in student.state_dict().items())


def test_an_unknown_precision_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match="distill.precision: 'float8' is not one of float32, bfloat16, float16"):
        TrainConfig(1, 1e-3, "r", "float8")


@pytest.mark.cuda
def test_autocast_on_cuda_reaches_the_fvu_of_float32(tmp_path, make_store, gelu_teacher):
    kwargs = {"seed": 0, "group_chunks": 2, "in_memory": True, "device": "cuda"}
    groups = [teacher_store(tmp_path / f"{s}.zarr", make_store, gelu_teacher, n, s) for s, n in ((0, 2048), (1, 512))]
    stores = [ActivationBatches(g, 128, shuffle=not i, **kwargs) for i, g in enumerate(groups)]
    results = precision_fvus(stores, "moe_lowrank_r4_m16_s4_k4", ["float32", "bfloat16", "float16"], "cuda")
    for precision in ("bfloat16", "float16"):
        assert results[precision]["fvu"] == pytest.approx(results["float32"]["fvu"], abs=FVU_TOLERANCE), precision
