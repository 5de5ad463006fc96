"""Expand a config into the experiment grid: which students run for which model, per family.

Families share the same distillation rule and results table; a student belongs to every family that
lists it.  `main` is the paper's comparison (MLP widths, and MoE with s = k); the others are the
ablations of docs/configuration.md, "Experiments".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from secret_moe.corpus import check_corpus
from secret_moe.errors import ConfigError
from secret_moe.families import FAMILIES, moe_sizes
from secret_moe.layout import RUN_KEYS, SPLITS, path
from secret_moe.models.layers import check_layer_range
from secret_moe.models.shape import SOURCE_FIELD, Shape, model_shape
from secret_moe.provenance import fingerprint_json
from secret_moe.schedule import Schedule
from secret_moe.settings import DistillSettings
from secret_moe.students import build_student, parse_student

log = logging.getLogger(__name__)


def _sweep(config: dict[str, Any], model: str) -> dict[str, Any] | None:
    spec = config.get("experiments", {}).get("layer_sweep", {})
    return spec if spec.get("enabled") and spec["model"] == model else None


def layers_of(config: dict[str, Any], model: str) -> list[int]:
    """Layers with a target for `model`: its main layers, then extra layers of the layer sweep."""
    layers = list(config["models"][model]["layers"])
    sweep = _sweep(config, model)
    return layers + [layer for layer in (sweep["layers"] if sweep else []) if layer not in layers]


def model_layers(config: dict[str, Any]) -> list[tuple[str, int]]:
    return [(model, layer) for model in config["models"] for layer in layers_of(config, model)]


SOURCE_KEYS = ("source", "hf_id", "revision", "gguf_package", "path", "init", "dtype")
# Keys of `capture` that decide how the stores are scheduled, not what they hold: kept out of the capture rules'
# params and the stores' attributes, so that turning them on or off reruns nothing.
CAPTURE_SCHEDULING_KEYS = ("one_pass",)


def one_pass_layers(config: dict[str, Any], exists: Callable[[str], bool]) -> list[int]:
    """The layers rule capture_layers captures in one forward pass per split for each model of `capture.one_pass`:
    those whose stores (every such model, both splits) all do not `exist` yet; none when fewer than two do not.

    Like a bundle of distillation runs (`plan_bundles`), the pass takes only what is missing, so that adding a
    layer to the config never reruns (and so deletes) a finished store: the stores that exist belong to
    capture_activations, whose inputs and params a store made in one pass has too."""
    models = config.get("capture", {}).get("one_pass", [])
    if not models:
        return []
    layers = [
        layer
        for layer in sorted(layers_of(config, models[0]))
        if not any(exists(path("activations", model=m, layer=layer, split=s)) for m in models for s in SPLITS)
    ]
    return layers if len(layers) > 1 else []


def check_one_pass(config: dict[str, Any]) -> None:
    """`capture.one_pass` names models of the config, all with the same layers (one pass serves one layer set)."""
    models = config.get("capture", {}).get("one_pass", [])
    for name in models:
        if name not in config["models"]:
            raise ConfigError(f"capture.one_pass: {name!r} is not a key of models (or padding_controls)")
    layer_sets = {name: sorted(layers_of(config, name)) for name in models}
    if len({tuple(layers) for layers in layer_sets.values()}) > 1:
        listed = "; ".join(f"{name}: {layers}" for name, layers in layer_sets.items())
        raise ConfigError(f"capture.one_pass: its models must list the same layers, one pass serves one set ({listed})")


def resolve_variants(config: dict[str, Any]) -> None:
    """Add each padding control to `models` (in place), as a model that shares its base's tokenizer, weights
    and tokens (`same_as`, with the base's source keys and router rank) and keeps padded positions."""
    for name, control in config.get("padding_controls", {}).items():
        base = control["same_as"]
        if name in config["models"]:
            raise ConfigError(f"padding_controls.{name}: the name is already a key of models")
        if base not in config["models"] or "same_as" in config["models"][base]:
            raise ConfigError(f"padding_controls.{name}.same_as: {base!r} is not a key of models")
        inherited = (*SOURCE_KEYS, "router_rank")
        config["models"][name] = {
            **{key: config["models"][base][key] for key in inherited if key in config["models"][base]},
            "same_as": base,
            "keep_padding": True,
            "padding_batch_lines": control["batch_lines"],
            "layers": control["layers"],
            "max_tokens": control.get("max_tokens", {}),
        }


def resource_model(config: dict[str, Any], model: str) -> str:
    """The model whose materialised tokenizer, weights and tokens `model` uses: its `same_as`, else itself."""
    return config["models"][model].get("same_as", model)


def is_control(spec: dict[str, Any]) -> bool:
    return spec.get("init", "pretrained") == "random" or bool(spec.get("keep_padding"))


def controls(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Control models mapped to the model they are compared with and a label for the comparison:
    random weights (`init: random`) vs the pretrained model of the same Hub id, and padded positions kept
    (`keep_padding`) vs the model it is `same_as`."""
    plain = {
        spec.get("hf_id"): name for name, spec in config["models"].items() if not is_control(spec) and spec.get("hf_id")
    }
    found = {}
    for name, spec in config["models"].items():
        if spec.get("keep_padding") and spec.get("same_as"):
            found[name] = {
                "base": spec["same_as"],
                "base_label": "non-padding tokens",
                "label": "padded positions kept",
            }
        elif spec.get("init") == "random" and spec.get("hf_id") in plain:
            found[name] = {"base": plain[spec["hf_id"]], "base_label": "pretrained", "label": "random weights"}
    return found


def check_moe_sizes(moe: dict[str, Any]) -> None:
    """Refuse a `distill.moe` whose sizes are all dropped for k > m; warn when some are."""
    kept, dropped = moe_sizes(moe)
    if not dropped:
        return
    listed = ", ".join(f"k={k} > m={m}" for m, k in dropped)
    if not kept:
        raise ConfigError(f"distill.moe: every MoE size has k > m ({listed}), so the main comparison has no MoE")
    log.warning("distill.moe: skipping the MoE sizes with k > m (%s)", listed)


def students_by_family(config: dict[str, Any], model: str, layer: int) -> dict[str, list[str]]:
    """Students per experiment family (secret_moe.families) at one (model, layer); sweep-only layers run the
    sweep's students, and controls (random weights, padded positions) the main comparison only."""
    rank = config["models"][model]["router_rank"]
    sweep = _sweep(config, model)
    sweep_students = FAMILIES["layer_sweep"].students(sweep, rank) if sweep else []
    if layer not in config["models"][model]["layers"]:
        return {"layer_sweep": sweep_students}
    experiments = {} if is_control(config["models"][model]) else config.get("experiments", {})
    families = {"main": FAMILIES["main"].students(config["distill"], rank)}
    for name, family in FAMILIES.items():
        if name not in ("main", "layer_sweep") and (spec := experiments.get(name, {})).get("enabled"):
            families[name] = family.students(spec, rank)
    if sweep_students:
        families["layer_sweep"] = sweep_students
    return families


def figures_for(config: dict[str, Any], model: str, layer: int, in_paper: bool) -> list[str]:
    """The per-layer figures of (model, layer): those of its families (none for a sweep-only layer, which the
    model's layer_sweep figure shows); `in_paper`: the published numbers cover this teacher and layer."""
    families = students_by_family(config, model, layer)
    if "main" not in families:
        return []
    return [
        figure.name
        for name in families
        if not FAMILIES[name].per_model
        for figure in FAMILIES[name].figures
        if in_paper or not figure.needs_paper
    ]


def all_students(config: dict[str, Any], model: str, layer: int) -> list[str]:
    return sorted({name for names in students_by_family(config, model, layer).values() for name in names})


def run_dir(run: dict[str, Any]) -> str:
    return path("run", **run)


def budget_check(config: dict[str, Any]) -> dict[str, Any] | None:
    spec = config.get("experiments", {}).get("budget_check", {})
    return spec if spec.get("enabled") else None


LONGER_BUDGET_KEYS = ("factor", "seeds")  # experiments.budget_check's keys of the longer budget, without a ladder


def check_budget_check(config: dict[str, Any], schedule: Schedule) -> None:
    """Under a budget ladder (`schedule`: `distill.schedule`) the check compares the ladder's last two rungs of every
    seed, so `factor` and `seeds` would be ignored: refuse them. Without a ladder an enabled check trains the main
    comparison again at `factor` times the epochs on `seeds`: require them (the schema gives them no default, as no
    ladder could use one)."""
    spec = config.get("experiments", {}).get("budget_check", {})
    rungs = schedule.rungs
    if rungs > 1 and (ignored := [key for key in LONGER_BUDGET_KEYS if key in spec]):
        raise ConfigError(
            f"experiments.budget_check: {' and '.join(ignored)} would be ignored under a budget ladder "
            f"(distill.schedule.rungs: {rungs}), whose check compares the last two rungs of every seed: remove them"
        )
    if rungs == 1 and spec.get("enabled") and (missing := [key for key in LONGER_BUDGET_KEYS if key not in spec]):
        raise ConfigError(
            f"experiments.budget_check: without a budget ladder the check needs {' and '.join(missing)} (the main "
            "comparison again at factor times distill.epochs, on these seeds)"
        )


def ladder_budgets(config: dict[str, Any]) -> list[int]:
    """The budgets of the config's ladder (`distill.schedule`, shortest first), or [] without one."""
    schedule = DistillSettings.from_config(config).schedule
    return schedule.budgets(config["distill"]["epochs"]) if schedule.rungs > 1 else []


def distill_runs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every distillation run of the config, as wildcard values: each student at `distill.epochs` for every
    learning rate and seed, plus, without a budget ladder, the main comparison at `budget_check.factor` times
    the epochs (its seeds)."""
    distill = config["distill"]
    # under a budget ladder the check compares the last two rungs of the same runs: no extra runs
    check = budget_check(config) if not ladder_budgets(config) else None
    runs = []
    for model, layer in model_layers(config):
        main = students_by_family(config, model, layer).get("main", [])
        for data in distill["data"]:
            for student in all_students(config, model, layer):
                budgets = [(distill["epochs"], distill["seeds"])]
                if check and student in main:
                    budgets.append((distill["epochs"] * check["factor"], check["seeds"]))
                runs += [
                    {
                        "model": model,
                        "layer": layer,
                        "data": data,
                        "student": student,
                        "epochs": epochs,
                        "lr": lr,
                        "seed": seed,
                    }
                    for epochs, seeds in budgets
                    for lr in distill["learning_rates"]
                    for seed in seeds
                ]
    return runs


def plan_bundles(
    runs: list[dict[str, Any]], finished: Callable[[dict[str, Any]], str | None], size: int
) -> dict[tuple[str, int, str, str], list[dict[str, Any]]]:
    """Group the runs into bundles, each trained in one process on the same batches.

    Runs share a bundle when they read the same store with the same seed and epochs (hence the same batches);
    the config's runs of such a group are cut into chunks of `size` in a fixed order, and a bundle holds the
    unfinished runs of one chunk, so adding a student to the config leaves the other chunks' bundles as they
    are.  `finished(run)` returns the name of the bundle that trained a finished run (None for an unfinished
    one); finished runs keep that bundle, so Snakemake sees the same input as when it made them, and it is
    built again only if Snakemake decides to redo them (their inputs changed).  Returns (model, layer, data,
    bundle name) -> runs; a name encodes epochs, seed and a hash of the members, so it is the same whenever
    the same runs are left to train.
    """
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(tuple(run[k] for k in ("model", "layer", "data", "epochs", "seed")), []).append(run)
    bundles: dict[tuple[str, int, str, str], list[dict[str, Any]]] = {}
    for members in groups.values():
        members = sorted(members, key=lambda r: (r["student"], r["lr"]))
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            todo = []
            for run in chunk:
                if (name := finished(run)) is None:
                    todo.append(run)
                else:
                    bundles.setdefault((run["model"], run["layer"], run["data"], name), []).append(run)
            if todo:
                first = todo[0]
                digest = fingerprint_json([[m["student"], m["lr"]] for m in todo])[:8]
                name = f"e{first['epochs']}_seed{first['seed']}_{digest}"
                bundles[(first["model"], first["layer"], first["data"], name)] = todo
    return bundles


def bundle_index(bundles: dict[tuple[str, int, str, str], list[dict[str, Any]]]) -> dict[tuple, str]:
    """Run (as a tuple of RUN_KEYS values) -> the name of the bundle that trains it."""
    return {tuple(run[k] for k in RUN_KEYS): key[3] for key, members in bundles.items() for run in members}


def _layer_keys(config: dict[str, Any], model: str) -> dict[int, str]:
    """Each layer of `model` with a target, mapped to the config key that asks for it."""
    spec = config["models"][model]
    own = f"padding_controls.{model}.layers" if spec.get("same_as") else f"models.{model}.layers"
    return {
        layer: own if layer in spec["layers"] else "experiments.layer_sweep.layers"
        for layer in layers_of(config, model)
    }


def check_model_layers(config: dict[str, Any], network: bool = False) -> None:
    """Every model can be read and its layers exist, where its shape is known without weights (models/shape.py): a
    GGUF file's or package's metadata, a folder's config.json, a Hub config in the local cache, or with `network`
    one fetched from the Hub (the Snakefile's `onstart`, before any job runs; a dry run plans without it)."""
    shapes: dict[str, Shape | None] = {}
    for name in config["models"]:
        base = resource_model(config, name)  # a padding control is read through the model it is the same as
        if base not in shapes:
            shapes[base] = model_shape(config["models"][base], base, network=network)
        if (shape := shapes[base]) is not None:
            for layer, key in _layer_keys(config, name).items():
                check_layer_range(shape.layers, [layer], key)


def check_config(config: dict[str, Any]) -> None:
    """Checks beyond the JSON schema, all cheap: run before any job is scheduled."""
    check_corpus(config["corpus"])
    check_moe_sizes(config["distill"]["moe"])
    schedule = DistillSettings.from_config(config).schedule
    schedule.budgets(config["distill"]["epochs"])
    check_budget_check(config, schedule)
    if (check := budget_check(config)) and schedule.rungs == 1:
        schedule.budgets(config["distill"]["epochs"] * check["factor"])
    sweep = config.get("experiments", {}).get("layer_sweep", {})
    if sweep.get("enabled") and sweep.get("model") not in config["models"]:
        raise ConfigError(f"experiments.layer_sweep.model: {sweep.get('model')!r} is not a key of models")
    check_one_pass(config)
    for name, spec in config["models"].items():
        needed = SOURCE_FIELD[spec["source"]]
        if needed not in spec:
            raise ConfigError(f"models.{name}: source {spec['source']!r} needs the key {needed!r}")
    check_model_layers(config, network=False)
    for name in config["models"]:
        for student in sorted({s for layer in layers_of(config, name) for s in all_students(config, name, layer)}):
            try:
                build_student(parse_student(student), d_model=1)
            except ConfigError as error:
                raise ConfigError(f"models.{name}: student {student}: {error}") from error
