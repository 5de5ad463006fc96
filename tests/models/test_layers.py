"""Finding decoder layers and MLPs, and rejecting layers a model does not have."""

from __future__ import annotations

import pytest

from secret_moe.errors import ConfigError
from secret_moe.models.layers import check_layers, decoder_layers, hidden_size, layer_mlp, num_layers
from secret_moe.testing import TINY_CONFIGS

ARCHS = sorted(TINY_CONFIGS)


@pytest.mark.parametrize("arch", ARCHS)
def test_num_layers_and_hidden_size(tiny_models, arch):
    config = tiny_models[arch].config
    assert num_layers(config) == 3
    assert hidden_size(config) == 32


@pytest.mark.parametrize("arch", ARCHS)
def test_check_layers_accepts_every_existing_layer(tiny_models, arch):
    check_layers(tiny_models[arch].config, [0, 1, 2], "tiny")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("bad", [3, 7, -1])
def test_check_layers_names_model_and_bad_layer(tiny_models, arch, bad):
    with pytest.raises(ConfigError) as error:
        check_layers(tiny_models[arch].config, [0, bad], f"my-{arch}")
    message = str(error.value)
    assert f"my-{arch}" in message
    assert f"layer {bad}" in message
    assert "3 layers" in message


@pytest.mark.parametrize("arch", ARCHS)
def test_layer_mlp_is_the_blocks_mlp(tiny_models, arch):
    model = tiny_models[arch]
    layers = decoder_layers(model)
    assert len(layers) == 3
    for index in range(3):
        mlp = layer_mlp(model, index)
        assert mlp is layers[index].mlp
    assert layer_mlp(model, 0) is not layer_mlp(model, 1)
