"""Expand a config into the experiment grid: which students run for which model, per family.

Families share the same distillation rule and results table; a student belongs to every family that
lists it.  `main` is the paper's comparison (MLP widths, and MoE with s = k); the others are the
ablations of README "Experiments".
"""

from __future__ import annotations

from itertools import product
from typing import Any

from secret_moe.corpus import check_corpus
from secret_moe.errors import ConfigError
from secret_moe.students import build_student, parse_student, student_name

FAMILIES = ("main", "shared_split", "router_rank", "expert_width", "num_experts")


def _moe(router: str, rank: int, experts: int, shared: int, k: int, width: int = 1) -> str:
    return student_name(
        {"kind": "moe", "router": router, "rank": rank, "experts": experts, "shared": shared, "k": k,
         "expert_width": width}
    )


def _split(active: int, fraction: float, router: str, rank: int, experts: int, width: int = 1) -> str:
    """Student with s = fraction·active shared neurons and the rest in experts (all shared: an MLP)."""
    shared = round(fraction * active)
    if shared >= active:
        return student_name({"kind": "mlp", "hidden": active})
    return _moe(router, rank, experts, shared, (active - shared) // width, width)


def students_by_family(config: dict[str, Any], model: str) -> dict[str, list[str]]:
    rank = config["models"][model].get("router_rank", 128)
    distill, experiments = config["distill"], config.get("experiments", {})
    moe = distill["moe"]
    families: dict[str, list[str]] = {
        "main": [student_name({"kind": "mlp", "hidden": h}) for h in distill["mlp_widths"]]
        + [_moe(r, rank, m, k, k) for r, m, k in product(moe.get("routers", []), moe.get("experts", []), moe.get("k", []))]
    }
    if (spec := experiments.get("shared_split", {})).get("enabled"):
        families["shared_split"] = [
            _split(spec["active"], f, spec["router"], rank, spec["experts"]) for f in spec["shared_fractions"]
        ] + [student_name({"kind": "mlp", "hidden": spec["active"]})]
    if (spec := experiments.get("router_rank", {})).get("enabled"):
        routers = [("lowrank", r) for r in spec["ranks"]] + ([("fullrank", rank)] if spec["include_fullrank"] else [])
        families["router_rank"] = [_moe(name, r, spec["experts"], k, k) for (name, r), k in product(routers, spec["k"])]
    if (spec := experiments.get("expert_width", {})).get("enabled"):
        families["expert_width"] = [
            _split(spec["active"], 0.5, spec["router"], rank, spec["experts"], w) for w in spec["widths"]
        ]
    if (spec := experiments.get("num_experts", {})).get("enabled"):
        families["num_experts"] = [_moe(spec["router"], rank, m, spec["k"], spec["k"]) for m in spec["experts"]]
    return families


def all_students(config: dict[str, Any], model: str) -> list[str]:
    return sorted({name for names in students_by_family(config, model).values() for name in names})


def distill_runs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every distillation job of the config, as wildcard values."""
    distill = config["distill"]
    return [
        {"model": model, "layer": layer, "data": data, "student": student, "lr": lr, "seed": seed}
        for model, spec in config["models"].items()
        for layer in spec["layers"]
        for data in distill["data"]
        for student in all_students(config, model)
        for lr in distill["learning_rates"]
        for seed in distill["seeds"]
    ]


def check_config(config: dict[str, Any]) -> None:
    """Checks beyond the JSON schema, all cheap: run before any job is scheduled."""
    check_corpus(config["corpus"])
    for name, spec in config["models"].items():
        needed = {"hub": "hf_id", "gguf_package": "gguf_package", "local": "path"}[spec["source"]]
        if needed not in spec:
            raise ConfigError(f"models.{name}: source {spec['source']!r} needs the key {needed!r}")
        for student in all_students(config, name):
            try:
                build_student(parse_student(student), d_model=1)
            except ConfigError as error:
                raise ConfigError(f"models.{name}: student {student}: {error}") from error
