"""What the workflow builds for a checked config: its figures, its runs and their bundles, and the values that
rules/common.smk's input and params functions give the rules.

Plain functions of the config and of wildcard values, testable without Snakemake.  Two of them read files while
Snakemake builds the DAG, each file once per plan: `run_finished` a run's metrics and timing (a finished run keeps
the bundle that trained it, so it is not trained again), and `paper_coverage` the paper table (which layers get
the figures that compare with the published numbers; the table is also an input of those figures).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from secret_moe.layout import PATHS, RUN_FILES, RUN_KEYS, TIMING_FILE, member_dir, path
from secret_moe.plan import (
    CAPTURE_SCHEDULING_KEYS,
    SOURCE_KEYS,
    budget_check,
    bundle_index,
    controls,
    distill_runs,
    figures_for,
    ladder_budgets,
    model_layers,
    plan_bundles,
    resource_model,
    run_dir,
    students_by_family,
)
from secret_moe.settings import distill_params

PDF_AND_PNG = ("pdf", "png")
Run = dict[str, Any]


def model_spec(config: dict[str, Any], model: str) -> dict[str, Any]:
    """The keys that decide a model's weights and compute dtype: only these trigger reruns when changed
    (a new layer or router rank must not re-materialise the model)."""
    spec = config["models"][model]
    return {key: spec[key] for key in SOURCE_KEYS if key in spec}


def resource_path(config: dict[str, Any], kind: str, model: str, split: str | None = None) -> str:
    """The materialised tokenizer / model / token store (of `split`) that `model` uses: a `same_as` variant uses its
    base model's."""
    values = {"model": resource_model(config, model)}
    if "{split}" in PATHS[kind]:
        values["split"] = split
    return path(kind, **values)


def capture_config(config: dict[str, Any], model: str) -> dict[str, Any]:
    """The extraction settings of one model: config `capture` without its scheduling keys (which decide no store's
    content), plus the padding keys of a keep_padding variant."""
    spec = config["models"][model]
    settings = {key: value for key, value in config["capture"].items() if key not in CAPTURE_SCHEDULING_KEYS}
    if not spec.get("keep_padding"):
        return settings
    return {
        **settings,
        "keep_padding": True,
        "padding_batch_lines": spec["padding_batch_lines"],
        "max_tokens": spec["max_tokens"],
    }


# A seed's own Gaussian draw is sampled with seed + split_seeds[split] + DRAW_STRIDE x (seed + 1), apart from the
# shared sample's seed + split_seeds[split] (the schema keeps split seeds below the stride)
DRAW_STRIDE = 1000


def data_store(config: dict[str, Any], data: str, split: str, seed: int) -> str:
    """Path of the store a distillation run of `seed` reads: real activations, or their Gaussian control (the
    seed's own draw under `gaussian.draw_per_seed`, else the one shared sample)."""
    if data == "activations":
        return path("activations", split=split)
    if config["gaussian"]["draw_per_seed"]:
        return path("gaussian_draw", split=split, draw=seed)
    return path("gaussian", split=split)


def gaussian_seed(config: dict[str, Any], split: str, draw: int | None = None) -> int:
    """The sampling seed of a Gaussian store: the shared sample of `split`, or seed `draw`'s own."""
    seed = config["seed"] + config["gaussian"]["split_seeds"][split]
    return seed if draw is None else seed + DRAW_STRIDE * (draw + 1)


def run_finished(config: dict[str, Any], run: Run) -> str | None:
    """The bundle that trained `run` under the current distillation settings and seed, else None.

    Read while the DAG is built, once per run: a finished run must keep its bundle (and so not be put into a new
    one and trained again), which only files can tell.  Its own folder first (collect_run copied it out), then
    the finished bundles of its store, seed and epochs: a run trained but not yet copied out when Snakemake
    stopped stays in the bundle that holds it (whose other runs may be out already, so that a bundle named by
    the runs still missing would be new and train it again)."""
    if (name := _recorded_bundle(Path(run_dir(run)), config)) is not None:
        return name
    where = {key: run[key] for key in ("model", "layer", "data")}
    bundles = Path(path("bundle", **where, bundle="_")).parent
    for folder in sorted(bundles.glob(f"e{run['epochs']}_seed{run['seed']}_*")):
        if _recorded_bundle(member_dir(folder, run), config) == folder.name and _bundle_complete(folder):
            return folder.name
    return None


def _recorded_bundle(folder: Path, config: dict[str, Any]) -> str | None:
    """The bundle a run's folder records, if it holds every file and its metrics record the current distillation
    settings and seed."""
    if not all((folder / name).is_file() for name in (*RUN_FILES, TIMING_FILE)):
        return None
    recorded = json.loads((folder / RUN_FILES[0]).read_text())["provenance"]["config"]
    if recorded != {"distill": distill_params(config), "seed": config["seed"]}:
        return None
    return json.loads((folder / TIMING_FILE).read_text()).get("bundle")


def _bundle_complete(folder: Path) -> bool:
    """Whether a bundle's folder holds all its runs (train_students writes them after training them all, each
    run's metrics last; a bundle cut off while writing them is trained again)."""
    members = [m for m in folder.iterdir() if (m / RUN_FILES[0]).is_file() and (m / TIMING_FILE).is_file()]
    return bool(members) and json.loads((members[0] / TIMING_FILE).read_text())["bundle_size"] == len(members)


@dataclass(frozen=True)
class DistillPlan:
    """The config's runs, their bundles ((model, layer, data, bundle name) -> runs) and each run's bundle name."""

    runs: list[Run]
    bundles: dict[tuple[str, int, str, str], list[Run]]
    bundle_of: dict[tuple, str]


def distill_plan(config: dict[str, Any], finished: Callable[[Run], str | None] | None = None) -> DistillPlan:
    """Every run of the config bundled (`plan.plan_bundles`); `finished` defaults to `run_finished`."""
    runs = distill_runs(config)
    bundles = plan_bundles(runs, finished or partial(run_finished, config), config["distill"]["bundle_size"])
    return DistillPlan(runs, bundles, bundle_index(bundles))


def run_of(wildcards: Mapping[str, str]) -> Run:
    """The run a collect_run job copies, with the types the plan uses."""
    types = {"layer": int, "epochs": int, "lr": float, "seed": int}
    return {key: types.get(key, str)(wildcards[key]) for key in RUN_KEYS}


def bundle_of_run(plan: DistillPlan, wildcards: Mapping[str, str]) -> str:
    """The folder of the bundle that trains the run of `wildcards`."""
    run = run_of(wildcards)
    where = {key: run[key] for key in ("model", "layer", "data")}
    return path("bundle", **where, bundle=plan.bundle_of[tuple(run.values())])


def bundle_seed(plan: DistillPlan, wildcards: Mapping[str, str]) -> int:
    """The seed every run of the bundle of `wildcards` shares (a bundle is one store, seed and budget)."""
    key = (wildcards["model"], int(wildcards["layer"]), wildcards["data"], wildcards["bundle"])
    return plan.bundles[key][0]["seed"]


def distill_metrics(plan: DistillPlan) -> list[str]:
    """Every run's metrics file, the input of aggregate_runs."""
    return [f"{run_dir(run)}/{RUN_FILES[0]}" for run in plan.runs]


def paper_coverage(paper_table: str | Path) -> set[tuple[str, int]]:
    """The (Hub id, layer) pairs of the published numbers, read once per plan (the table is committed)."""
    with open(paper_table, newline="") as stream:
        return {(row["model"], int(row["layer"])) for row in csv.DictReader(stream)}


def in_paper(config: dict[str, Any], covered: set[tuple[str, int]], model: str, layer: int) -> bool:
    """Whether the published numbers (`paper_coverage`) cover this pretrained teacher and layer."""
    spec = config["models"][model]
    return (spec.get("hf_id"), layer) in covered and spec.get("init", "pretrained") == "pretrained"


def _figures(kind: str, figure: str, **where: Any) -> list[str]:
    return [path(kind, figure=figure, ext=ext, **where) for ext in PDF_AND_PNG]


def layer_figure_files(config: dict[str, Any], covered: set[tuple[str, int]]) -> list[str]:
    """The per-layer figures of the families of every (model, layer)."""
    return [
        file
        for model, layer in model_layers(config)
        for name in figures_for(config, model, layer, in_paper(config, covered, model, layer))
        for file in _figures("figure", name, model=model, layer=layer)
    ]


def all_figure_files(config: dict[str, Any], paper_table: str | Path) -> list[str]:
    """Every figure of `figures/all`, reading the paper table once."""
    sweep = config["experiments"].get("layer_sweep", {})
    per_model = _figures("model_figure", "layer_sweep", model=sweep["model"]) if sweep.get("enabled") else []
    control = [file for model in controls(config) for file in _figures("model_figure", "control", model=model)]
    verdict = _figures("summary_figure", "verdict")
    padding = [  # what the published FVU measures: each padding control, per layer
        file
        for model, spec in config["models"].items()
        if spec.get("keep_padding")
        for layer in spec["layers"]
        for file in _figures("figure", "what_fvu_measures", model=model, layer=layer)
    ]
    ladder = [  # convergence as a ladder, where the schedule gives one and the budget check is on
        file
        for model, layer in (model_layers(config) if ladder_budgets(config) and budget_check(config) else [])
        if "main" in students_by_family(config, model, layer)
        for file in _figures("figure", "ladder", model=model, layer=layer)
    ]
    per_layer = layer_figure_files(config, paper_coverage(paper_table))
    return per_layer + per_model + control + padding + ladder + verdict + scan_figure_files(config)


def scan_layers(config: dict[str, Any], model: str) -> list[int]:
    """The layers of a model's profile (docs/scan.md): those of its main comparison, which the verdict covers."""
    return sorted(config["models"][model]["layers"])


def scan_figure_files(config: dict[str, Any]) -> list[str]:
    """Every model's layer profile figure (the profile table is its input): one point per layer of its main
    comparison (`secret-moe scan` runs one model's every layer)."""
    return [file for model in config["models"] for file in _figures("model_figure", "scan", model=model)]
