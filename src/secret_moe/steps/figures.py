"""Steps of rules/figures.smk: the figures, from the results tables."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from secret_moe import figures
from secret_moe.scan.figure import scan


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
) -> plt.Figure:
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
        return figures.learning_curves(curves, title, pdf, png)
    elif figure == "paper_comparison":
        paper = pd.read_csv(paper_csv)
        paper = paper[(paper.model == hf_id) & (paper.layer == layer) & paper.in_notebook_figure]
        return figures.paper_comparison(best, paper, f"{title} vs paper ({hf_id})", pdf, png)
    return getattr(figures, figure)(best, title, pdf, png)


def plot_layer_sweep(advantage_csv: str, *, model: str, pdf: str, png: str) -> None:
    advantage = pd.read_csv(advantage_csv)
    figures.layer_sweep(advantage[advantage.model == model], f"{model}: MoE advantage by layer", pdf, png)


def plot_control(
    advantage_csv: str, *, model: str, base: str, label: str, base_label: str, pdf: str, png: str
) -> plt.Figure:
    """`model` is a control (random weights, or padded positions kept) of `base`: their MoE advantages."""
    advantage = pd.read_csv(advantage_csv)
    layers = set(advantage.layer[advantage.model == model])  # the base may have more (a layer sweep)
    both = advantage[advantage.model.isin([model, base]) & advantage.layer.isin(layers)].copy()
    both["variant"] = both.model.map({base: base_label, model: label})
    layers = ", ".join(map(str, sorted(set(both.layer))))
    return figures.control(both, [base_label, label], f"{base} layer {layers}: {base_label} vs {label}", pdf, png)


def plot_verdict(verdict_csv: str, by_seed_csv: str, *, pdf: str, png: str) -> None:
    figures.verdict(pd.read_csv(verdict_csv), pd.read_csv(by_seed_csv), "MoE advantage and verdict", pdf, png)


def plot_what_fvu_measures(
    by_kind_csv: str, *, model: str, layer: int, base: str, epochs: int, pdf: str, png: str
) -> None:
    """`model` is a padding control of `base`: its FVU over all rows and on token rows, and the base's."""
    by_kind = pd.read_csv(by_kind_csv)
    title = f"{base} layer {layer}: what the FVU on padded D_act measures"
    figures.what_fvu_measures(by_kind[by_kind.layer == layer], model, base, epochs, title, pdf, png)


def plot_ladder(runs_csv: str, *, model: str, layer: int, tolerance: float, pdf: str, png: str) -> None:
    """The budget ladder of (model, layer): every main-comparison student's FVU at every rung."""
    runs = pd.read_csv(runs_csv, keep_default_na=False, na_values=[""])
    runs = runs[(runs.model == model) & (runs.layer == layer)]
    figures.ladder(runs, tolerance, f"{model} layer {layer}: FVU against the training budget", pdf, png)


def plot_scan(profile_csv: str, *, model: str, pdf: str, png: str) -> plt.Figure:
    """The layer profile of `model` (results/scan/<model>/profile.csv): advantage and input statistics by layer."""
    profile = pd.read_csv(profile_csv, keep_default_na=False, na_values=[""])
    return scan(profile, f"{model}: MoE advantage and input statistics by layer", pdf, png)
