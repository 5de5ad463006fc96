"""One function per workflow rule: read inputs, call the science modules, write outputs with provenance.

Rule scripts in `scripts/` are thin wrappers that pass Snakemake's named inputs, outputs and params here.
The functions live in `prepare`, `distill` and `results`; importing one loads only its stage's libraries, so
a distillation job does not pay for importing transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {
    "prepare": (
        "prepare_tokenizer",
        "prepare_model",
        "tokenise_corpus",
        "export_teacher",
        "store_identity",
        "capture_activations",
        "fit_gaussian",
        "sample_gaussian",
    ),
    "distill": ("train_students", "collect_run"),
    "results": ("read_metrics", "aggregate_runs", "plot_figure", "plot_layer_sweep", "plot_control", "plot_verdict"),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
