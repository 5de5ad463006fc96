# Config validation, wildcard constraints and path helpers shared by every stage.
import json
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from secret_moe.families import CAPTIONS, LAYER_FIGURES
from secret_moe.layout import PATHS, RESULT_TABLES, RUN_FILES, RUN_KEYS, SPLITS, TIMING_FILE, path
from secret_moe.plan import (
    CAPTURE_SCHEDULING_KEYS,
    SOURCE_KEYS,
    budget_check,
    ladder_budgets,
    bundle_index,
    check_config,
    check_model_layers,
    check_renamed_keys,
    figures_for,
    controls,
    distill_runs,
    plan_bundles,
    run_dir,
    layers_of,
    model_layers,
    one_pass_layers,
    resolve_variants,
    resource_model,
    students_by_family,
)
from secret_moe.students import STUDENT_PATTERN
from secret_moe.precision import FULL_PRECISION
from secret_moe.schema import config_source, validate_config
from secret_moe.workflow_rules import LOCAL_RULES

# Refusals in one line naming the key, before any job: the schema (then its defaults), the checks beyond it, and
# once Snakemake is about to run jobs (not in a dry run, which plans offline), a Hub model's layers against its
# config fetched from the Hub (docs/robustness.md).
check_renamed_keys(config)
validate_config(
    config, Path(workflow.basedir) / "config" / "schema.yaml", config_source(workflow.overwrite_configfiles)
)
resolve_variants(config)
check_config(config)


onstart:
    check_model_layers(config, network=True)


# Scheduling on few cores: every store is built before bundles train (so that no core waits for a late store
# at the end), and among bundles the longer budgets start first (priority = the bundle's epochs).
STORE_PRIORITY = 1000
ENV = "../envs/secret-moe.yaml"

# Rules that run where Snakemake runs, never as cluster jobs: listed once, in secret_moe.workflow_rules.
workflow.localrules(*LOCAL_RULES)


def mem_mb(rule):
    """A rule's memory request (MiB), from the config's `resources:` section (schema defaults)."""
    return config["resources"][rule]["mem_mb"]


wildcard_constraints:
    model="|".join(config["models"]),
    layer=r"\d+",
    split="train|validation",
    data="activations|gaussian",
    student=STUDENT_PATTERN,
    lr=r"[0-9.e-]+",
    seed=r"\d+",
    epochs=r"\d+",
    bundle=r"e\d+_seed\d+_[0-9a-f]+",


def model_spec(wildcards):
    """The keys that decide a model's weights and compute dtype: only these trigger reruns when changed
    (a new layer or router rank must not re-materialise the model)."""
    spec = config["models"][wildcards.model]
    return {key: spec[key] for key in SOURCE_KEYS if key in spec}


def resource(kind, split=None):
    """Input function: the materialised tokenizer / model / token store a model uses (a `same_as` variant
    uses its base model's)."""

    def where(wildcards):
        values = {"model": resource_model(config, wildcards.model)}
        if "{split}" in PATHS[kind]:
            values["split"] = wildcards.get("split", split)
        return path(kind, **values)

    return where


def capture_config(wildcards):
    """The extraction settings of one model: config `capture` without its scheduling keys (which decide no store's
    content), plus the padding keys of a keep_padding variant."""
    spec = config["models"][wildcards.model]
    settings = {key: value for key, value in config["capture"].items() if key not in CAPTURE_SCHEDULING_KEYS}
    if not spec.get("keep_padding"):
        return settings
    return {
        **settings,
        "keep_padding": True,
        "padding_batch_lines": spec["padding_batch_lines"],
        "max_tokens": spec["max_tokens"],
    }


# capture.one_pass: the layers whose stores rule capture_layers makes in one pass per model and split (those all
# missing now; the stores that exist stay with capture_activations, see secret_moe.plan.one_pass_layers).
ONE_PASS_LAYERS = one_pass_layers(config, lambda store: Path(store).exists())


def data_store(data, split):
    """Path of the store a distillation run reads: real activations or their Gaussian control."""
    return path("activations" if data == "activations" else "gaussian", split=split)


# The keys of `distill` that decide a run's result (editing the grid, e.g. widths or seeds, must not redo
# finished runs; epochs, learning rate and seed are part of each run's path).
DISTILL_KEYS = ("batch_size", "group_chunks", "in_memory", "schedule")


def distill_params(wildcards=None):
    """The settings that decide a run, recorded in its provenance; `precision` only when it is not float32, so
    the runs trained before the key existed (all float32) stay finished, and any other precision retrains."""
    params = {key: config["distill"][key] for key in DISTILL_KEYS}
    if config["distill"]["precision"] != FULL_PRECISION:
        params["precision"] = config["distill"]["precision"]
    return params


def run_finished(run):
    """The bundle that trained the run, if its files exist and record the current distillation settings."""
    folder = Path(run_dir(run))
    if not all((folder / name).is_file() for name in (*RUN_FILES, TIMING_FILE)):
        return None
    recorded = json.loads((folder / RUN_FILES[0]).read_text())["provenance"]["config"]
    if recorded != {"distill": distill_params(), "seed": config["seed"]}:
        return None
    return json.loads((folder / TIMING_FILE).read_text()).get("bundle")


RUNS = distill_runs(config)
BUNDLES = plan_bundles(RUNS, run_finished, config["distill"]["bundle_size"])
BUNDLE_OF = bundle_index(BUNDLES)


def run_of(wildcards):
    """The run a collect_run job copies, with the types the plan uses."""
    types = {"layer": int, "epochs": int, "lr": float, "seed": int}
    return {key: types.get(key, str)(wildcards[key]) for key in RUN_KEYS}


def bundle_of_run(wildcards):
    run = run_of(wildcards)
    return path(
        "bundle", **{key: run[key] for key in ("model", "layer", "data")}, bundle=BUNDLE_OF[tuple(run.values())]
    )


def distill_metrics():
    return [f"{run_dir(run)}/{RUN_FILES[0]}" for run in RUNS]


# Figures: which ones each (model, layer) gets (secret_moe.families has their captions).
PAPER_TABLE = str(Path(workflow.basedir) / PATHS["paper_table"])


def in_paper(model, layer):
    """Whether the published numbers cover this pretrained teacher and layer."""
    import pandas as pd

    paper = pd.read_csv(PAPER_TABLE)
    spec = config["models"][model]
    covered = ((paper.model == spec.get("hf_id")) & (paper.layer == layer)).any()
    return bool(covered) and spec.get("init", "pretrained") == "pretrained"


def all_figure_files():
    per_layer = [
        path("figure", model=model, layer=layer, figure=name, ext=ext)
        for model, layer in model_layers(config)
        for name in figures_for(config, model, layer, in_paper(model, layer))
        for ext in ("pdf", "png")
    ]
    sweep = config["experiments"].get("layer_sweep", {})
    per_model = (
        [path("model_figure", model=sweep["model"], figure="layer_sweep", ext=ext) for ext in ("pdf", "png")]
        if sweep.get("enabled")
        else []
    )
    control = [
        path("model_figure", model=model, figure="control", ext=ext)
        for model in controls(config)
        for ext in ("pdf", "png")
    ]
    verdict = [path("summary_figure", figure="verdict", ext=ext) for ext in ("pdf", "png")]
    padding = [  # what the published FVU measures: each padding control, per layer
        path("figure", model=model, layer=layer, figure="what_fvu_measures", ext=ext)
        for model, spec in config["models"].items()
        if spec.get("keep_padding")
        for layer in spec["layers"]
        for ext in ("pdf", "png")
    ]
    ladder = [  # convergence as a ladder, where the schedule gives one and the budget check is on
        path("figure", model=model, layer=layer, figure="ladder", ext=ext)
        for model, layer in model_layers(config)
        if ladder_budgets(config) and budget_check(config) and "main" in students_by_family(config, model, layer)
        for ext in ("pdf", "png")
    ]
    return per_layer + per_model + control + padding + ladder + verdict + scan_figure_files()


def scan_layers(model):
    """The layers of a model's profile (docs/scan.md): those of its main comparison, which the verdict covers."""
    return sorted(config["models"][model]["layers"])


def scan_figure_files():
    """Every model's layer profile figure (the profile table is its input): one point per layer of its main
    comparison (`secret-moe scan` runs one model's every layer)."""
    return [
        path("model_figure", model=model, figure="scan", ext=ext)
        for model in config["models"]
        for ext in ("pdf", "png")
    ]
