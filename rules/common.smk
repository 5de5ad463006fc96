# Config validation, wildcard constraints and thin calls into the plan (secret_moe.targets says what to build).
import os
import sys

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from secret_moe import targets
from secret_moe.config import prepare_config
from secret_moe.families import CAPTIONS, LAYER_FIGURES
from secret_moe.layout import PATHS, RUN_FILES, SPLITS, path
from secret_moe.plan import (
    budget_check,
    check_model_layers,
    controls,
    ladder_budgets,
    model_layers,
    one_pass_layers,
    students_by_family,
)
from secret_moe.scheduler_timer import one_reevaluation_timer
from secret_moe.schema import config_source
from secret_moe.settings import distill_params
from secret_moe.students import STUDENT_PATTERN
from secret_moe.workflow_rules import LOCAL_RULES

# Refusals in one line naming the key, before any job: the config as secret_moe.config reads it, and once Snakemake
# is about to run jobs (not in a dry run, which plans offline), a Hub model's layers against its config fetched
# from the Hub (docs/robustness.md).
prepare_config(config, config_source(workflow.overwrite_configfiles))

# Snakemake's scheduling loop keeps one pending wake-up, not one more per finished job (secret_moe.scheduler_timer).
one_reevaluation_timer()


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
    draw=r"\d+",


def resource(kind, split=None):
    """Input function: the tokenizer / model / token store a model uses (secret_moe.targets.resource_path)."""
    return lambda w: targets.resource_path(config, kind, w.model, w.get("split", split))


# capture.one_pass: the layers of rule capture_layers (the stores that exist stay with capture_activations)
ONE_PASS_LAYERS = one_pass_layers(config, os.path.exists)
# distillation: every run, and the bundles that train them (finished runs keep theirs)
DISTILL = targets.distill_plan(config)
BUNDLES = DISTILL.bundles
# figures: which ones each (model, layer) gets (secret_moe.families has their captions)
PAPER_TABLE = str(Path(workflow.basedir) / PATHS["paper_table"])
