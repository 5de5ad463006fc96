"""Student names: one string per architecture, used as the Snakemake wildcard and in the results table.

mlp_h64                       dense MLP of width 64
moe_lowrank_r128_m1024_s32_k32  MoE, low-rank router of rank 128, 1024 experts, s = 32, k = 32
moe_fullrank_m1024_s32_k32_e2   full-rank router, experts of width 2
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

from secret_moe.errors import ConfigError
from secret_moe.students.mlp import MLPConfig, MLPStudent
from secret_moe.students.moe import MoEConfig, MoEStudent
from secret_moe.students.routers import ROUTERS

_MOE_PATTERN = re.compile(
    rf"moe_(?P<router>{'|'.join(ROUTERS)})(?:_r(?P<rank>\d+))?_m(?P<experts>\d+)"
    r"_s(?P<shared>\d+)_k(?P<k>\d+)(?:_e(?P<expert_width>\d+))?"
)
_MLP_PATTERN = re.compile(r"mlp_h(?P<hidden>\d+)")


def _unnamed(pattern: re.Pattern[str]) -> str:
    """The pattern's source with its named groups made non-capturing, to embed in another regex."""
    return re.sub(r"\(\?P<\w+>", "(?:", pattern.pattern)


# Every student name, as one regex: the `student` wildcard constraint of the workflow (rules/common.smk).
STUDENT_PATTERN: str = f"{_unnamed(_MLP_PATTERN)}|{_unnamed(_MOE_PATTERN)}"


def student_name(spec: dict[str, Any]) -> str:
    if spec["kind"] == "mlp":
        return f"mlp_h{spec['hidden']}"
    rank = "" if spec["router"] == "fullrank" else f"_r{spec['rank']}"
    width = f"_e{spec['expert_width']}" if spec.get("expert_width", 1) != 1 else ""
    return f"moe_{spec['router']}{rank}_m{spec['experts']}_s{spec['shared']}_k{spec['k']}{width}"


def parse_student(name: str) -> dict[str, Any]:
    if match := _MLP_PATTERN.fullmatch(name):
        return {"kind": "mlp", "hidden": int(match["hidden"])}
    if match := _MOE_PATTERN.fullmatch(name):
        spec = {key: int(value) for key, value in match.groupdict().items() if key != "router" and value}
        return {"kind": "moe", "router": match["router"], "expert_width": 1, **spec}
    raise ConfigError(f"cannot parse student name {name!r}")


def active_neurons(spec: dict[str, Any]) -> int:
    if spec["kind"] == "mlp":
        return spec["hidden"]
    return spec["shared"] + spec["k"] * spec.get("expert_width", 1)


def build_student(spec: dict[str, Any], d_model: int) -> nn.Module:
    if spec["kind"] == "mlp":
        return MLPStudent(MLPConfig(d_model, spec["hidden"]))
    fields = {key: value for key, value in spec.items() if key != "kind"}
    return MoEStudent(MoEConfig(d_model=d_model, **fields))
