"""The teacher: one layer's MLP as a standalone module, saved once so later stages never load the LLM."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.activations import ACT2FN

from secret_moe.errors import ConfigError
from secret_moe.provenance import read_json, write_json

_ACTIVATION_KEYS = ("hidden_activation", "hidden_act", "activation_function")


@dataclass
class TeacherConfig:
    d_model: int
    d_hidden: int
    gated: bool  # down(act(gate(x)) * up(x)) as in llama/gemma, else down(act(up(x)))
    activation: str  # a key of transformers' ACT2FN
    bias: bool

    def __post_init__(self) -> None:
        if self.activation not in ACT2FN:
            raise ConfigError(f"teacher activation {self.activation!r} is not known to transformers")


class TeacherMLP(nn.Module):
    def __init__(self, config: TeacherConfig) -> None:
        super().__init__()
        self.config = config
        self.up = nn.Linear(config.d_model, config.d_hidden, bias=config.bias)
        self.gate = nn.Linear(config.d_model, config.d_hidden, bias=config.bias) if config.gated else None
        self.down = nn.Linear(config.d_hidden, config.d_model, bias=config.bias)
        self.act = ACT2FN[config.activation]

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return self.down(self.act(self.up(x_BD)))
        return self.down(self.act(self.gate(x_BD)) * self.up(x_BD))


def _activation_name(hf_config: Any) -> str:
    for key in _ACTIVATION_KEYS:
        value = getattr(hf_config, key, None)
        if isinstance(value, str):
            return value
    raise ConfigError(f"cannot tell the MLP activation of a {type(hf_config).__name__}")


def _linear_weights(mlp: nn.Module) -> tuple[dict[str, nn.Module], bool]:
    """Map the known MLP layouts onto (up, gate, down); gpt2's Conv1D stores weights transposed."""
    if all(hasattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")):
        return {"up": mlp.up_proj, "gate": mlp.gate_proj, "down": mlp.down_proj}, False
    if hasattr(mlp, "dense_h_to_4h"):
        return {"up": mlp.dense_h_to_4h, "down": mlp.dense_4h_to_h}, False
    if hasattr(mlp, "c_fc"):
        return {"up": mlp.c_fc, "down": mlp.c_proj}, True
    if hasattr(mlp, "fc1"):
        return {"up": mlp.fc1, "down": mlp.fc2}, False
    raise ConfigError(f"unknown MLP layout {type(mlp).__name__}: children {[n for n, _ in mlp.named_children()]}")


def teacher_from_hf(mlp: nn.Module, hf_config: Any) -> TeacherMLP:
    """Copy a Hugging Face MLP module into a TeacherMLP that computes the same function."""
    parts, transposed = _linear_weights(mlp)
    up_weight = parts["up"].weight.T if transposed else parts["up"].weight
    config = TeacherConfig(
        d_model=up_weight.shape[1],
        d_hidden=up_weight.shape[0],
        gated="gate" in parts,
        activation=_activation_name(hf_config),
        bias=getattr(parts["up"], "bias", None) is not None,
    )
    teacher = TeacherMLP(config)
    with torch.no_grad():
        for name, source in parts.items():
            target = getattr(teacher, name)
            target.weight.copy_(source.weight.T if transposed else source.weight)
            if config.bias:
                target.bias.copy_(source.bias)
    return teacher.float().eval()


def save_teacher(teacher: TeacherMLP, directory: str | Path, provenance: dict[str, Any]) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, directory / "model.safetensors")
    write_json(directory / "config.json", {"teacher": asdict(teacher.config), "provenance": provenance})


def load_teacher(directory: str | Path, device: str | torch.device = "cpu") -> TeacherMLP:
    directory = Path(directory)
    teacher = TeacherMLP(TeacherConfig(**read_json(directory / "config.json")["teacher"]))
    teacher.load_state_dict(load_file(directory / "model.safetensors"))
    return teacher.to(device).eval()
