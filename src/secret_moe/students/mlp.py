"""The dense student: Linear(d→h) → GELU → Linear(h→d); h active neurons."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from secret_moe.errors import ConfigError


@dataclass
class MLPConfig:
    d_model: int
    hidden: int

    def __post_init__(self) -> None:
        if self.hidden <= 0:
            raise ConfigError(f"MLP student width must be positive, got {self.hidden}")


class MLPStudent(nn.Module):
    def __init__(self, config: MLPConfig) -> None:
        super().__init__()
        self.config = config
        self.up = nn.Linear(config.d_model, config.hidden)
        self.down = nn.Linear(config.hidden, config.d_model)

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:
        return self.down(nn.functional.gelu(self.up(x_BD)))
