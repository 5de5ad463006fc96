"""Workflow steps of the results stages: the results tables and the figures."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from secret_moe import figures
from secret_moe.aggregate import advantage_per_seed, best_over_lr, best_per_seed, moe_advantage, runs_table
from secret_moe.plan import RUN_KEYS
from secret_moe.provenance import read_json
from secret_moe.steps.distill import TIMING_FILE
from secret_moe.verdict import budget_check_table, verdict_table

log = logging.getLogger(__name__)


def read_metrics(paths: list[str]) -> list[dict[str, Any]]:
    """Each run's metrics.json, with its timing.json (if present) under "timing"."""
    metrics = []
    for path in paths:
        timing = Path(path).with_name(TIMING_FILE)
        metrics.append({**read_json(path), "timing": read_json(timing) if timing.is_file() else {}})
    return metrics


def aggregate_runs(
    metric_paths: list[str],
    families: list[tuple[str, int, dict[str, list[str]]]],
    *,
    epochs: int,
    budget_check: dict[str, Any] | None,
    confidence: float,
    out: dict[str, str],
) -> None:
    """Write the results tables (`out` maps each table's name to its path): runs, best, best_by_seed,
    curves, moe_advantage, advantage_by_seed, budget_check and verdict (README "Results tables")."""
    metrics = read_metrics(metric_paths)
    membership: dict[tuple[str, int, str], list[str]] = {}
    for model, layer, by_family in families:
        for family, students in by_family.items():
            for student in students:
                membership.setdefault((model, layer, student), []).append(family)
    runs = runs_table(metrics, membership)
    per_seed = best_per_seed(runs, epochs)
    by_seed_advantage = advantage_per_seed(per_seed)
    check = None
    if budget_check:
        check = budget_check_table(
            runs, epochs, budget_check["factor"], budget_check["seeds"], budget_check["tolerance"]
        )
    tables = {
        "runs": runs,
        "best": best_over_lr(runs, epochs),
        "best_by_seed": per_seed,
        "curves": pd.DataFrame([{**{k: m[k] for k in RUN_KEYS}, **h} for m in metrics for h in m["history"]]),
        "moe_advantage": moe_advantage(by_seed_advantage, confidence),
        "advantage_by_seed": by_seed_advantage,
        "budget_check": check if check is not None else pd.DataFrame(),
        "verdict": verdict_table(
            by_seed_advantage, check, confidence, budget_check["tolerance"] if budget_check else None
        ),
    }
    for name, table in tables.items():
        table.to_csv(out[name], index=False)
    log.info("aggregated %d runs into %d points", len(runs), len(tables["best"]))


def plot_figure(
    figure: str,
    best_csv: str,
    curves_csv: str,
    paper_csv: str,
    *,
    model: str,
    layer: int,
    hf_id: str | None,
    epochs: int,
    pdf: str,
    png: str,
) -> None:
    best = pd.read_csv(best_csv, keep_default_na=False, na_values=[""])
    best = best[(best.model == model) & (best.layer == layer)]
    title = f"{model} layer {layer}"
    if figure == "learning_curves":  # main-comparison students, each at its best learning rate
        curves = pd.read_csv(curves_csv)
        curves = curves[curves.epochs == epochs]  # the configured budget (not the budget check's)
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


def plot_verdict(verdict_csv: str, by_seed_csv: str, *, pdf: str, png: str) -> None:
    figures.verdict(pd.read_csv(verdict_csv), pd.read_csv(by_seed_csv), "MoE advantage and verdict", pdf, png)
