"""The exported teacher computes the captured MLP output from the captured MLP input, for every architecture."""

from __future__ import annotations

import pytest
import torch

from secret_moe.capture import capture_batch
from secret_moe.errors import ConfigError
from secret_moe.models.layers import layer_mlp
from secret_moe.models.teacher import TeacherConfig, TeacherMLP, load_teacher, save_teacher, teacher_from_hf
from secret_moe.testing import TINY_CONFIGS

ARCHS = sorted(TINY_CONFIGS)
GATED = {"gpt2": False, "gpt_neox": False, "llama": True, "gemma3_text": True}


def captured(model, layer: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, model.config.vocab_size, (2, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    x, y = capture_batch(model, layer, ids, mask)
    keep = mask.bool()
    return x[keep], y[keep]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("layer", [0, 2])
def test_teacher_applied_to_captured_x_gives_captured_y(tiny_models, arch, layer):
    model = tiny_models[arch]
    x, y = captured(model, layer)
    teacher = teacher_from_hf(layer_mlp(model, layer), model.config)
    assert teacher.config.gated == GATED[arch]
    assert teacher.config.d_model == x.shape[-1]
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_teacher_of_another_layer_does_not_match(tiny_models, arch):
    """Guards the previous test against passing trivially: layer 0's teacher is not layer 2's MLP."""
    model = tiny_models[arch]
    x, y = captured(model, 2)
    wrong = teacher_from_hf(layer_mlp(model, 0), model.config)
    with torch.no_grad():
        assert not torch.allclose(wrong(x), y, atol=1e-3)


@pytest.mark.parametrize("arch", ARCHS)
def test_teacher_is_a_copy_not_a_view(tiny_models, arch):
    model = tiny_models[arch]
    teacher = teacher_from_hf(layer_mlp(model, 1), model.config)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(1.0)
    x, y = captured(model, 1)  # the model's own MLP is untouched
    fresh = teacher_from_hf(layer_mlp(model, 1), model.config)
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, before[key])
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ARCHS)
def test_save_and_load_teacher_round_trip(tiny_models, arch, tmp_path):
    model = tiny_models[arch]
    teacher = teacher_from_hf(layer_mlp(model, 1), model.config)
    provenance = {"model": arch, "layer": 1}
    save_teacher(teacher, tmp_path / "teacher", provenance)
    assert (tmp_path / "teacher" / "model.safetensors").stat().st_size > 0
    loaded = load_teacher(tmp_path / "teacher")
    assert loaded.config == teacher.config
    assert not loaded.training
    assert loaded.state_dict().keys() == teacher.state_dict().keys()
    for key, value in teacher.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    x, y = captured(model, 1, seed=7)
    with torch.no_grad():
        assert torch.equal(loaded(x), teacher(x))
        torch.testing.assert_close(loaded(x), y, rtol=1e-5, atol=1e-6)
    import json

    assert json.loads((tmp_path / "teacher" / "config.json").read_text())["provenance"] == provenance


def test_unknown_teacher_activation_is_a_config_error():
    with pytest.raises(ConfigError, match="no_such_activation"):
        TeacherConfig(d_model=4, d_hidden=8, gated=False, activation="no_such_activation", bias=True)


def test_gated_teacher_formula():
    """down(act(gate x) * up x), checked against explicit matrix algebra."""
    teacher = TeacherMLP(TeacherConfig(d_model=5, d_hidden=7, gated=True, activation="silu", bias=False))
    x = torch.randn(3, 5)
    expected = (torch.nn.functional.silu(x @ teacher.gate.weight.T) * (x @ teacher.up.weight.T)) @ teacher.down.weight.T
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), expected)
