"""The experiment families: one entry each, with the students it trains, its figures and their captions.

A family's students come from its config (`experiments.<name>`; the main comparison: `distill`) and the
model's router rank.  Each figure is drawn by the function of the same name in `secret_moe.figures`, from the
results tables.  Adding a family: one entry here (students, figure, caption), its plotting function, and its
config keys in config/schema.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import product
from typing import Any

from secret_moe.students import student_name


@dataclass(frozen=True)
class Figure:
    name: str  # the function of secret_moe.figures that draws it, and its file name
    caption: str
    needs_paper: bool = False  # drawn only where the published numbers cover this teacher and layer


@dataclass(frozen=True)
class Family:
    students: Callable[[dict[str, Any], int], list[str]]  # (the family's config, router rank) -> student names
    figures: tuple[Figure, ...]
    per_model: bool = False  # its figure spans the model's layers (figures/{model}/{figure}), not one layer


def moe(router: str, rank: int, experts: int, shared: int, k: int, width: int = 1) -> str:
    spec = {"kind": "moe", "router": router, "rank": rank, "experts": experts, "shared": shared, "k": k}
    return student_name({**spec, "expert_width": width})


def mlp(hidden: int) -> str:
    return student_name({"kind": "mlp", "hidden": hidden})


def split(active: int, fraction: float, router: str, rank: int, experts: int, width: int = 1) -> str:
    """Student with s = fraction·active shared neurons and the rest in experts (all shared: an MLP)."""
    shared = round(fraction * active)
    if shared >= active:
        return mlp(active)
    return moe(router, rank, experts, shared, (active - shared) // width, width)


def moe_sizes(spec: dict[str, Any]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The (m, k) sizes of the main comparison `distill.moe`, kept and dropped: as in the paper's grid, sizes
    with more active experts than experts (k > m) are skipped."""
    sizes = list(product(spec.get("experts", []), spec.get("k", [])))
    return [(m, k) for m, k in sizes if k <= m], [(m, k) for m, k in sizes if k > m]


def _main(distill: dict[str, Any], rank: int) -> list[str]:
    moes = product(distill["moe"].get("routers", []), moe_sizes(distill["moe"])[0])
    return [mlp(h) for h in distill["mlp_widths"]] + [moe(r, rank, m, k, k) for r, (m, k) in moes]


def _shared_split(spec: dict[str, Any], rank: int) -> list[str]:
    students = [split(spec["active"], f, spec["router"], rank, spec["experts"]) for f in spec["shared_fractions"]]
    return students + [mlp(spec["active"])]


def _router_rank(spec: dict[str, Any], rank: int) -> list[str]:
    routers = (
        [("lowrank", r) for r in spec["ranks"]]
        + ([("fullrank", rank)] if spec["include_fullrank"] else [])
        + [("product_key", r) for r in spec.get("product_key_ranks", [])]
    )
    return [moe(name, r, spec["experts"], k, k) for (name, r), k in product(routers, spec["k"])]


def _expert_width(spec: dict[str, Any], rank: int) -> list[str]:
    return [split(spec["active"], 0.5, spec["router"], rank, spec["experts"], w) for w in spec["widths"]]


def _num_experts(spec: dict[str, Any], rank: int) -> list[str]:
    k = spec["k"]
    return [moe(spec["router"], rank, m, k, k) for m in spec["experts"]] + [
        moe("product_key", rank, m, k, k) for m in spec.get("product_key_experts", [])
    ]


def _layer_sweep(spec: dict[str, Any], rank: int) -> list[str]:
    return [mlp(h) for h in spec["mlp_widths"]] + [moe(spec["router"], rank, spec["experts"], k, k) for k in spec["k"]]


FAMILIES = {
    "main": Family(
        _main,
        (
            Figure(
                "fvu_vs_active",
                "Validation FVU vs active neurons: dense MLP vs MoE students, real activations vs Gaussian control.",
            ),
            Figure(
                "learning_curves",
                "Validation FVU per epoch of each main-comparison student, at its best learning rate.",
            ),
            Figure(
                "paper_comparison",
                "This run's best FVU points next to the published ones for the same teacher and layer.",
                needs_paper=True,
            ),
        ),
    ),
    "shared_split": Family(
        _shared_split,
        (Figure("shared_split", "FVU at fixed active neurons as the share held by the always-on shared MLP varies."),),
    ),
    "router_rank": Family(
        _router_rank,
        (
            Figure(
                "router_comparison",
                "Low-rank routers of several ranks vs the full-rank router at equal active neurons.",
            ),
        ),
    ),
    "expert_width": Family(
        _expert_width,
        (
            Figure(
                "expert_width",
                "FVU at fixed active neurons as each expert's hidden width grows (fewer, wider experts active).",
            ),
        ),
    ),
    "num_experts": Family(
        _num_experts, (Figure("num_experts", "FVU at fixed active neurons as the number of experts m grows."),)
    ),
    "layer_sweep": Family(
        _layer_sweep,
        (
            Figure(
                "layer_sweep",
                "MoE advantage per layer: the dense MLP width needed to match the MoE's FVU, over its active neurons.",
            ),
        ),
        per_model=True,
    ),
}
CAPTIONS = {figure.name: figure.caption for family in FAMILIES.values() for figure in family.figures}
LAYER_FIGURES = [f.name for family in FAMILIES.values() if not family.per_model for f in family.figures]
