"""One function per workflow rule: read inputs, call the science modules, write outputs with provenance.

Rule scripts in `scripts/` are thin wrappers that pass Snakemake's named inputs, outputs and params here.
Each stage's functions live in a module of their own, named after its rules file; importing one loads only that
stage's libraries, so a distillation job does not pay for importing transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

from secret_moe.workflow_rules import PLOT_RULES

_MODULES = {  # steps/<module>.py holds the steps of rules/<module>.smk (tokens: rules/tokenise.smk)
    "models": ("prepare_tokenizer", "prepare_model", "export_teacher"),
    "tokens": ("tokenise_corpus",),
    "activations": ("store_identity", "capture_activations", "capture_layers"),
    "gaussian": ("fit_gaussian", "sample_gaussian"),
    "distill": ("train_students",),
    "collect": ("collect_run",),  # rules/distill.smk's file copy, without the training's imports (torch)
    "aggregate": ("read_metrics", "aggregate_runs"),
    "scan": ("describe_inputs", "profile_layers"),
    "figures": PLOT_RULES,  # each step is named after its rule
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
