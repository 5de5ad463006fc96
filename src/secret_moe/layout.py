"""The map of the DAG: where every step writes, and the stage groups that DVC versions.

`PATHS` holds one template per kind of output; the rules format these templates (`path`), `plan.py` and
`restore.py` read them, and nothing else spells a results path.  `STAGES` groups the rules into the stages of
dvc.yaml: which rules, which kinds they write and read, which config keys decide them.  dvc.yaml is generated
from it (`python -m secret_moe.dvc_yaml > dvc.yaml`), and tests/workflow/test_dag_map.py checks both against
the Snakemake DAG.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secret_moe.workflow_rules import PLOT_RULES

PATHS = {
    "tokenizer": "resources/tokenizers/{model}",
    "model": "resources/models/{model}",
    "tokens": "results/tokens/{model}/{split}.zarr",
    "teacher": "results/teacher/{model}/layer{layer}",
    "activations": "results/activations/{model}/layer{layer}/{split}.zarr",
    "moments": "results/gaussian/{model}/layer{layer}/moments.npz",
    "gaussian": "results/gaussian/{model}/layer{layer}/{split}.zarr",
    # gaussian.draw_per_seed: the sample that the runs of one seed train and validate on (docs/convergence.md)
    "gaussian_draw": "results/gaussian/{model}/layer{layer}/draw{draw}/{split}.zarr",
    # runs that read the same store with the same seed and epochs train together in a (temporary) bundle
    "bundle": "results/distill/{model}/layer{layer}/{data}/bundles/{bundle}",
    "run": "results/distill/{model}/layer{layer}/{data}/{student}/e{epochs}_lr{lr}_seed{seed}",
    # a bundle's training progress (secret_moe.checkpoint), deleted when it finishes; no rule's output, since
    # Snakemake deletes a failed job's outputs and a killed or timed-out job's rerun continues from it
    "checkpoint": "results/checkpoints/{model}/layer{layer}/{data}/{bundle}.pt",
    "table": "results/aggregate/{name}.csv",
    "figure": "figures/{model}/layer{layer}/{figure}.{ext}",
    "model_figure": "figures/{model}/{figure}.{ext}",  # one per model: layer_sweep, control
    "summary_figure": "figures/{figure}.{ext}",  # over every model: verdict
    "all_figures": "figures/all",
    "paper_table": "reference/paper_fvu_summary.csv",  # committed: the published numbers
    # `secret-moe scan` (docs/scan.md): each layer's input statistics vs its Gaussian twin, the model's profile over
    # its layers, and the config the command writes (no rule's output: Snakemake reads it)
    "input_stats": "results/scan/{model}/input_stats/layer{layer}.csv",
    "profile": "results/scan/{model}/profile.csv",
    "scan_config": "results/scan/{model}/config.yaml",
}
RUN_KEYS = tuple(re.findall(r"\{(\w+)\}", PATHS["run"]))  # the wildcards that name a run
RUN_FILES = ("metrics.json", "student.safetensors")  # inside a run folder
TIMING_FILE = "timing.json"  # beside them: wall-clock numbers and the bundle, kept out of the reproducible metrics
SPLITS = ("train", "validation")
# The results tables of rule aggregate_runs, each a `table` path
RESULT_TABLES = (
    "runs",
    "best",
    "best_by_seed",
    "curves",
    "moe_advantage",
    "advantage_by_seed",
    "budget_check",
    "verdict",
    "ladder",
    "fvu_by_kind",
    "learning_rates",
)
# What a padding control (`same_as`) takes from its base model instead of making its own.
SHARED_WITH_BASE = ("tokenizer", "model", "tokens")


def run_name(run: dict[str, Any]) -> str:
    """Short label of a run for logs and error messages: its RUN_KEYS joined by '/'."""
    return "/".join(str(run[key]) for key in RUN_KEYS)


def member_dir(bundle_dir: str | Path, run: dict[str, Any]) -> Path:
    """A run's folder inside its bundle's folder."""
    return Path(bundle_dir) / f"{run['student']}_lr{run['lr']}"


def path(kind: str, **values: object) -> str:
    """The template of `kind` with the given wildcards filled in; the others stay `{name}` for Snakemake."""
    template = PATHS[kind]
    for name, value in values.items():
        if "{" + name + "}" not in template:
            raise KeyError(f"{kind} paths have no wildcard {name!r}: {template}")
        template = template.replace("{" + name + "}", str(value))
    return template


def folder(kind: str, per_model: bool = True) -> str:
    """The folder DVC versions for `kind`: its template cut before the first component with a wildcard other
    than {model} (per-model stages), or with any wildcard (stages over every model)."""
    kept = []
    for part in PATHS[kind].split("/"):
        if "{" in part and not (per_model and part == "{model}"):
            break
        kept.append(part)
    return "/".join(kept)


def _within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer + "/")


@dataclass(frozen=True)
class Stage:
    """A group of rules that DVC versions together (one stage per model when `per_model`)."""

    rules: tuple[str, ...]
    writes: tuple[str, ...]  # kinds of PATHS
    reads: tuple[str, ...] = ()  # kinds of PATHS made by other stages, or literal paths
    config: tuple[str, ...] = ()  # config.yaml keys its rules read, beyond the model's own entry
    per_model: bool = True
    order_only: tuple[str, ...] = ()  # kinds its rules wait for but do not read (ancient(): no rerun)
    note: str = ""

    def outs(self) -> list[str]:
        """The folders (and files) DVC versions for this stage, none inside another; {model} for per-model ones."""
        found = list(dict.fromkeys(folder(kind, self.per_model) for kind in self.writes))
        return [f for f in found if not any(_within(f, other) for other in found if other != f)]


STAGES = {  # in the workflow's order
    "tokenizer": Stage(("prepare_tokenizer",), ("tokenizer",)),
    "tokens": Stage(("tokenise_corpus",), ("tokens",), reads=("tokenizer",), config=("seed", "corpus")),
    "model": Stage(
        ("prepare_model",),
        ("model",),
        config=("seed",),
        order_only=("tokens",),
        note="the materialised teacher LLM (prepare_model waits for the tokens only to fail early)",
    ),
    "activations": Stage(
        ("capture_activations", "capture_layers", "export_teacher"),
        ("activations", "teacher"),
        reads=("model", "tokenizer", "tokens"),
        config=("capture", "device", "experiments"),
        note="the stores of MLP inputs x and outputs y per layer and split, and each layer's MLP as a teacher",
    ),
    "gaussian": Stage(
        ("fit_gaussian", "sample_gaussian", "sample_gaussian_draw"),
        ("moments", "gaussian", "gaussian_draw"),
        reads=("activations", "teacher"),
        config=("gaussian",),
        note="the Gaussian control: fitted moments and sampled stores per layer",
    ),
    "distill": Stage(
        ("train_students", "collect_run"),
        ("bundle", "run"),
        reads=("activations", "gaussian", "gaussian_draw"),
        config=("distill",),
        note="every student of this model: all layers, data, learning rates and seeds",
    ),
    "aggregate": Stage(("aggregate_runs",), ("table",), reads=("run",), per_model=False),
    "scan": Stage(
        ("describe_inputs", "profile_layers"),
        ("input_stats", "profile"),
        reads=("activations", "gaussian", "table"),
        config=("verdict", "scan"),  # verdict: the table's intervals, which the aggregate stage lists under every key
        note="the layer profile: each layer's verdict row beside its input statistics, real and Gaussian twin",
    ),
    "figures": Stage(
        (*PLOT_RULES, "all_figures"),
        ("figure", "model_figure", "summary_figure", "all_figures"),
        reads=(
            *(
                path("table", name=name)
                for name in ("runs", "best", "curves", "moe_advantage", "advantage_by_seed", "verdict", "fvu_by_kind")
            ),
            "paper_table",
            "profile",
        ),
        per_model=False,
    ),
}
# Config keys that do not reach the padding controls: they run the main comparison only (plan.is_control).
NOT_FOR_CONTROLS = ("experiments",)
CONTROL_PREFIX = "padded_"


def control_stages() -> list[str]:
    """The per-model stages a padding control has of its own (it shares the rest with its base model)."""
    return [name for name, s in STAGES.items() if s.per_model and not set(s.writes) & set(SHARED_WITH_BASE)]


def _reads_a_global_stage(stage: Stage) -> bool:
    """Whether a per-model stage reads what a stage over every model writes (scan: the verdict table)."""
    return any(kind in PATHS and not STAGES[producer(kind)].per_model for kind in stage.reads)


def stage_groups() -> dict[str, Stage]:
    """Every dvc.yaml stage group in the workflow's order: the per-model ones, the padding controls' twins, then the
    stages over every model, each per-model stage that reads one of these (and its twin) after it (restore touches
    the groups in this order, so every output ends newer than its inputs)."""
    controls = control_stages()
    early = [name for name, s in STAGES.items() if s.per_model and not _reads_a_global_stage(s)]
    groups = {name: STAGES[name] for name in early}
    groups |= {CONTROL_PREFIX + name: STAGES[name] for name in controls if name in early}
    for name, s in STAGES.items():
        if name not in early:
            groups[name] = s
            if name in controls:
                groups[CONTROL_PREFIX + name] = s
    return groups


def producer(kind: str) -> str:
    """The stage that writes `kind`."""
    return next(name for name, s in STAGES.items() if kind in s.writes)


def config_keys(name: str) -> list[str]:
    """The config keys that decide a stage: its own and those of every stage upstream (Snakemake reruns every job
    downstream of a changed parameter, so `dvc status` must too)."""
    stage, keys = STAGES[name], []
    for kind in stage.reads:
        if kind in PATHS and kind in (k for s in STAGES.values() for k in s.writes):
            keys += [key for key in config_keys(producer(kind)) if key not in keys]
    return keys + [key for key in stage.config if key not in keys]
