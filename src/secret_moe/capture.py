"""Capture the input and output of one layer's MLP, stopping the forward pass right there."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from secret_moe.models.layers import layer_mlp


class _StopForward(Exception):
    """Raised by the hook once the MLP has run: later layers are never computed."""


@torch.no_grad()
def mlp_io(
    model: nn.Module, layer: int, input_ids_BT: torch.Tensor, attention_mask_BT: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) = (input, output) of layer `layer`'s MLP for every position, each (B, T, d)."""
    captured: dict[str, Any] = {}

    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        captured["x"], captured["y"] = args[0], output
        raise _StopForward

    handle = layer_mlp(model, layer).register_forward_hook(hook)
    try:
        model(input_ids=input_ids_BT, attention_mask=attention_mask_BT, use_cache=False)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if "x" not in captured:
        raise RuntimeError(f"the MLP of layer {layer} never ran during the forward pass")
    return captured["x"], captured["y"]
