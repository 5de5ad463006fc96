"""The budget of a scan (how many rows, students, epochs and seeds each layer gets), and the complete config that
`secret-moe scan` writes from it, MODEL and config.yaml.

A budget is a YAML of config sections (BUDGET_SECTIONS) deep-merged over config.yaml's BASE_SECTIONS; the presets
name files of the repository: `scan` (config/scan.yaml, sized for a CPU) and `verdict` (the `distill`, budget check
and `verdict` sections of config/verdict.yaml); any other value is the path of a budget file.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from secret_moe.errors import ScanArgumentError
from secret_moe.families import moe_sizes
from secret_moe.scan.target import Target

BASE_SECTIONS = ("seed", "device", "corpus", "capture", "gaussian", "verdict")  # what config.yaml gives every scan
BUDGET_SECTIONS = ("seed", "device", "corpus", "capture", "gaussian", "distill", "verdict", "experiments", "resources")
BUDGET_SECTIONS += ("scan",)
# preset -> (its file in the repository, the sections of it that are the budget; None: the whole file)
PRESETS = {
    "scan": ("config/scan.yaml", None),
    "verdict": ("config/verdict.yaml", ("distill", "experiments", "verdict")),
}
SCAN_EXPERIMENTS = ("budget_check",)  # a scan runs the main comparison only, with its budget check


def merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` deep-merged into a copy of `base` (mappings key by key, anything else replaced)."""
    result = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def load_budget(budget: str, repo: Path) -> dict[str, Any]:
    """The sections of a preset or budget file, checked: only BUDGET_SECTIONS, and no ablation family."""
    file, sections = (repo / PRESETS[budget][0], PRESETS[budget][1]) if budget in PRESETS else (Path(budget), None)
    if not file.is_file():
        raise ScanArgumentError(f"--budget: {budget!r} is no preset ({', '.join(PRESETS)}) and no file")
    raw = yaml.safe_load(file.read_text())
    if not isinstance(raw, dict):
        raise ScanArgumentError(f"--budget: {str(file)!r} is no YAML mapping of config sections")
    if sections is not None:
        raw = {key: raw[key] for key in sections if key in raw}
        raw["experiments"] = {k: v for k, v in raw.get("experiments", {}).items() if k in SCAN_EXPERIMENTS}
    unknown = sorted(set(raw) - set(BUDGET_SECTIONS))
    if unknown:
        raise ScanArgumentError(
            f"--budget: {str(file)!r}: {', '.join(unknown)} is no budget section (one of {', '.join(BUDGET_SECTIONS)})"
        )
    families = sorted(set(raw.get("experiments") or {}) - set(SCAN_EXPERIMENTS))
    if families:
        raise ScanArgumentError(
            f"--budget: {str(file)!r}: experiments.{families[0]}: a scan runs the main comparison and its budget "
            "check only"
        )
    return raw


def corpus_choice(values: list[str] | None) -> dict[str, Any]:
    """The `corpus` keys of --corpus: a source (python_docs, hub), or a train and a validation file."""
    if not values:
        return {}
    if values in (["python_docs"], ["hub"]):
        return {"source": values[0]}
    for value in values:
        if not Path(value).is_file():
            other = " (and it is neither python_docs nor hub)" if len(values) == 1 else ""
            raise ScanArgumentError(f"--corpus: file {value!r} does not exist{other}")
    if len(values) != 2:
        raise ScanArgumentError(
            f"--corpus: python_docs, hub, or two files (train, then validation), not {len(values)} file"
            + ("s" if len(values) > 1 else "")
        )
    train, validation = (str(Path(value).resolve()) for value in values)
    return {"source": "files", "files": {"train": train, "validation": validation}}


def scan_config(
    base: dict[str, Any], budget: dict[str, Any], corpus: dict[str, Any], target: Target, layers: list[int]
) -> dict[str, Any]:
    """The complete config of one scan: config.yaml's BASE_SECTIONS, the budget over them, --corpus over that, the
    one model with its layers, captured in one forward pass per split (capture.one_pass), and no padding control."""
    config = merged({key: base[key] for key in BASE_SECTIONS if key in base}, budget)
    config["corpus"] = merged(config.get("corpus", {}), corpus)
    config["models"] = {target.name: {**target.spec, "layers": layers}}
    config["capture"] = {**config.get("capture", {}), "one_pass": [target.name]}
    return config


def check_one_moe(config: dict[str, Any]) -> None:
    """A profile compares one MoE size across layers: the budget's main comparison must have exactly one."""
    moe = config["distill"]["moe"]
    sizes = len(moe_sizes(moe)[0]) * len(moe.get("routers", ["lowrank"]))
    if sizes != 1:
        raise ScanArgumentError(
            f"--budget: distill.moe gives {sizes} MoE students (routers x experts x k); a scan compares one MoE size "
            "across layers"
        )
