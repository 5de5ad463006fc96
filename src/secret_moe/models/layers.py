"""Find the decoder layers and a layer's MLP by the model's structure, not by its name.

The decoder stack is the `nn.ModuleList` whose length is the config's layer count (`model.layers` in
llama/gemma, `gpt_neox.layers`, `transformer.h` in gpt2); the MLP is the block's `mlp` (or
`feed_forward`/`ffn`) child.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from secret_moe.errors import ConfigError

_MLP_NAMES = ("mlp", "feed_forward", "ffn")


def num_layers(config: Any) -> int:
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ConfigError(f"cannot tell the layer count of a {type(config).__name__}")


def hidden_size(config: Any) -> int:
    for key in ("hidden_size", "n_embd", "d_model"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ConfigError(f"cannot tell the hidden size of a {type(config).__name__}")


def check_layers(config: Any, layers: list[int], model_name: str) -> None:
    """Fail, naming the model and layer, when a requested layer does not exist."""
    check_layer_range(num_layers(config), layers, f"models.{model_name}.layers")


def check_layer_range(count: int, layers: list[int], key: str) -> None:
    """Fail, naming the config key and the layer, when a layer is not one of `count`."""
    for layer in layers:
        if not 0 <= layer < count:
            raise ConfigError(f"{key}: layer {layer} is out of range; the model has {count} layers (0..{count - 1})")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    count = num_layers(model.config)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return module
    raise ConfigError(f"no list of {count} decoder layers found in {type(model).__name__}")


def layer_mlp(model: nn.Module, layer: int) -> nn.Module:
    block = decoder_layers(model)[layer]
    for name in _MLP_NAMES:
        if isinstance(getattr(block, name, None), nn.Module):
            return getattr(block, name)
    raise ConfigError(f"decoder layer {layer} of {type(model).__name__} has no MLP child {_MLP_NAMES}")
