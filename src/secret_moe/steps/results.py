"""Workflow steps of the results stages: the results tables and the figures."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from secret_moe import figures
from secret_moe.aggregate import best_over_lr, moe_advantage, runs_table
from secret_moe.provenance import read_json

log = logging.getLogger(__name__)


def read_metrics(paths: list[str]) -> list[dict[str, Any]]:
    return [read_json(p) for p in paths]


def aggregate_runs(
    metric_paths: list[str],
    families: list[tuple[str, int, dict[str, list[str]]]],
    *,
    runs: str,
    best: str,
    curves: str,
    advantage: str,
) -> None:
    metrics = read_metrics(metric_paths)
    membership: dict[tuple[str, int, str], list[str]] = {}
    for model, layer, by_family in families:
        for family, students in by_family.items():
            for student in students:
                membership.setdefault((model, layer, student), []).append(family)
    table = runs_table(metrics, membership)
    best_table = best_over_lr(table)
    table.to_csv(runs, index=False)
    best_table.to_csv(best, index=False)
    moe_advantage(best_table).to_csv(advantage, index=False)
    pd.DataFrame(
        [
            {**{k: m[k] for k in ("model", "layer", "data", "student", "lr", "seed")}, **h}
            for m in metrics
            for h in m["history"]
        ]
    ).to_csv(curves, index=False)
    log.info("aggregated %d runs into %d points", len(table), len(best_table))


def plot_figure(
    figure: str,
    best_csv: str,
    curves_csv: str,
    paper_csv: str,
    *,
    model: str,
    layer: int,
    hf_id: str | None,
    pdf: str,
    png: str,
) -> None:
    best = pd.read_csv(best_csv, keep_default_na=False, na_values=[""])
    best = best[(best.model == model) & (best.layer == layer)]
    title = f"{model} layer {layer}"
    if figure == "learning_curves":  # main-comparison students, each at its best learning rate
        curves = pd.read_csv(curves_csv)
        chosen = best[best.families.str.contains("main")][["data", "student", "best_lr"]]
        curves = curves[(curves.model == model) & (curves.layer == layer)].merge(
            chosen, left_on=["data", "student", "lr"], right_on=["data", "student", "best_lr"]
        )
        figures.learning_curves(curves, title, pdf, png)
    elif figure == "paper_comparison":
        paper = pd.read_csv(paper_csv)
        paper = paper[(paper.model == hf_id) & (paper.layer == layer) & paper.in_notebook_figure]
        figures.paper_comparison(best, paper, f"{title} vs paper ({hf_id})", pdf, png)
    else:
        getattr(figures, figure)(best, title, pdf, png)


def plot_layer_sweep(advantage_csv: str, *, model: str, pdf: str, png: str) -> None:
    advantage = pd.read_csv(advantage_csv)
    figures.layer_sweep(advantage[advantage.model == model], f"{model}: MoE advantage by layer", pdf, png)


def plot_control(advantage_csv: str, *, model: str, base: str, label: str, base_label: str, pdf: str, png: str) -> None:
    """`model` is a control (random weights, or padded positions kept) of `base`: their MoE advantages."""
    advantage = pd.read_csv(advantage_csv)
    layers = set(advantage.layer[advantage.model == model])  # the base may have more (a layer sweep)
    both = advantage[advantage.model.isin([model, base]) & advantage.layer.isin(layers)].copy()
    both["variant"] = both.model.map({base: base_label, model: label})
    layers = ", ".join(map(str, sorted(set(both.layer))))
    figures.control(both, [base_label, label], f"{base} layer {layers}: {base_label} vs {label}", pdf, png)
