"""Pick the compute device from the config's `device` key."""

from __future__ import annotations

import torch

from secret_moe.errors import ConfigError


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: 'cuda' was requested but torch sees no CUDA device")
    return name
