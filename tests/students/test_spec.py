"""Student names: one string per architecture, parsed back to the same spec and built into the right model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from secret_moe.errors import ConfigError
from secret_moe.students import STUDENT_PATTERN, active_neurons, build_student, parse_student, student_name
from secret_moe.students.mlp import MLPStudent
from secret_moe.students.moe import MoEStudent

SPECS = [
    ({"kind": "mlp", "hidden": 64}, "mlp_h64", 64),
    (
        {"kind": "moe", "router": "lowrank", "rank": 128, "experts": 1024, "shared": 32, "k": 32, "expert_width": 1},
        "moe_lowrank_r128_m1024_s32_k32",
        64,
    ),
    (
        {"kind": "moe", "router": "fullrank", "experts": 1024, "shared": 32, "k": 32, "expert_width": 2},
        "moe_fullrank_m1024_s32_k32_e2",
        96,
    ),
    (
        {"kind": "moe", "router": "product_key", "rank": 16, "experts": 4096, "shared": 0, "k": 8, "expert_width": 1},
        "moe_product_key_r16_m4096_s0_k8",
        8,
    ),
    (
        {"kind": "moe", "router": "lowrank", "rank": 8, "experts": 64, "shared": 4, "k": 2, "expert_width": 4},
        "moe_lowrank_r8_m64_s4_k2_e4",
        12,
    ),
]


@pytest.mark.parametrize(("spec", "name", "active"), SPECS)
def test_names_round_trip(spec, name, active):
    assert student_name(spec) == name
    assert parse_student(name) == spec
    assert student_name(parse_student(name)) == name
    assert active_neurons(spec) == active


def test_width_one_is_not_written_and_fullrank_has_no_rank():
    spec = {"kind": "moe", "router": "fullrank", "rank": 128, "experts": 16, "shared": 1, "k": 2, "expert_width": 1}
    assert student_name(spec) == "moe_fullrank_m16_s1_k2"
    assert "rank" not in parse_student("moe_fullrank_m16_s1_k2")


@pytest.mark.parametrize(
    "name",
    [
        "mlp_h",
        "mlp_64",
        "moe_lowrank_m16_k2",
        "moe_sparse_r8_m16_s1_k2",
        "MLP_h8",
        "moe_lowrank_r8_m16_s1_k2_e",
        "mlp_h8 ",
        "",
    ],
)
def test_unparsable_names_are_config_errors(name):
    with pytest.raises(ConfigError, match="cannot parse"):
        parse_student(name)


@pytest.mark.parametrize(("spec", "name", "active"), SPECS)
def test_built_students_match_their_names(spec, name, active):
    student = build_student(parse_student(name), d_model=8)
    if spec["kind"] == "mlp":
        assert isinstance(student, MLPStudent)
        assert student.up.out_features == spec["hidden"]
    else:
        assert isinstance(student, MoEStudent)
        assert student.w_in.shape == (spec["experts"] * spec["expert_width"], 8)
        assert (student.shared is None) == (spec["shared"] == 0)
    assert student(torch.randn(3, 8)).shape == (3, 8)


NEAR_MISSES = [
    "mlp_h",
    "mlp_h4x",
    "mlp_64",
    "moe_bogus_r8_m64_s4_k4",  # an unknown router
    "moe_lowrank_r8_m64_s4",  # no k
    "moe_lowrank_r8_m64_k4_s4",  # fields out of order
    "moe_lowrank_r8_m64_s4_k4_e",
    "moe_product_key_rr8_m64_s4_k4",
]


@pytest.mark.parametrize("name", [name for _, name, _ in SPECS] + NEAR_MISSES)
def test_the_wildcard_pattern_accepts_exactly_the_names_parse_student_accepts(name):
    try:
        parse_student(name)
        parsed = True
    except ConfigError:
        parsed = False
    assert (re.fullmatch(STUDENT_PATTERN, name) is not None) == parsed
    assert parsed == (name not in NEAR_MISSES)


def test_the_wildcard_pattern_is_the_workflows_constraint_and_captures_nothing():
    # Snakemake wraps a constraint in the wildcard's own group: an inner group would be one more wildcard
    assert re.compile(STUDENT_PATTERN).groups == 0
    common = (Path(__file__).resolve().parents[2] / "rules" / "common.smk").read_text()
    assert "    student=STUDENT_PATTERN," in common
