"""The figure of a layer profile (`profile.profile_table`): the MoE advantage against layer depth, real inputs vs
the Gaussian control, above the statistics of each layer's inputs and of their Gaussian twin, on a shared x axis."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.ticker import FuncFormatter, MaxNLocator

from secret_moe.figures import VERDICT_COLORS, _save, bound_ends, bound_marker, plain_number

SIDES = {"real": ("real activations", "tab:blue", "o", "-"), "gaussian": ("Gaussian twin", "tab:orange", "s", "--")}
# The statistics drawn below the advantage: (column stem of the profile, axis label, y scale)
PANELS = (
    ("kurtosis_median", "Excess kurtosis\nof projections\n(median)", "symlog"),
    ("participation_ratio", "Participation\nratio", "linear"),
    ("largest_group_variance_share", "Var(y) share,\nlargest group\nof equal rows", "linear"),
)
SPREAD = 0.3  # the width, in layers, over which the real and Gaussian points of one layer are spread


def offsets(students: list[str]) -> dict[tuple[str, str], float]:
    """x offset of each (student, side) point from its layer: real left of Gaussian, students side by side."""
    slots = [(student, side) for student in students for side in SIDES]
    step = SPREAD / len(slots)
    return {slot: (i + 0.5) * step - SPREAD / 2 for i, slot in enumerate(slots)}


def hollow(row: pd.Series) -> bool:
    """Drawn hollow: the layer's verdict is undecided, or a student of it failed (or missed) the budget check."""
    return row.verdict == "undecided" or row.converged not in (True, "True")  # a CSV may give the word


def bar(mean: float, low: float, high: float) -> tuple[str, float, float]:
    """The marker and the drawn ends of an interval whose open side (0 or inf: verdict.side_interval) makes it a bound:
    ▲ a lower bound, ▼ an upper bound, its open end a short bar (figures.bound_ends, as in figures.verdict); open on
    both sides, it bounds nothing: the point at that budget, no bar."""
    if low == 0 and high == math.inf:  # open on both sides (an unconverged MoE and unconverged MLPs): no bar at all
        return "o", math.nan, math.nan
    return bound_marker(low, high), *bound_ends(mean, low, high)


def _advantage(ax: plt.Axes, profile: pd.DataFrame) -> None:
    students = list(dict.fromkeys(profile.sort_values("active_neurons").student.dropna()))
    where, labelled = offsets(students or [""]), set()
    for _, row in profile.iterrows():
        for side, (label, colour, _, _) in SIDES.items():
            mean = row[f"advantage_{side}"]
            if pd.isna(mean):  # outside the measured MLP widths, or no verdict row
                continue
            marker, low, high = bar(mean, row[f"{side}_low"], row[f"{side}_high"])
            ax.errorbar(
                row.layer + where[(row.student if students else "", side)],
                mean,
                yerr=None if pd.isna(low) else [[mean - low], [high - mean]],
                fmt=marker,
                color=colour,
                mfc="white" if hollow(row) else colour,
                capsize=3,
                label=None if label in labelled else label,
            )
            labelled.add(label)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.margins(y=0.1)
    for _, row in profile.iterrows():  # the words above the panel, where no bar reaches them
        x = row.layer + (sum(where[(row.student, s)] for s in SIDES) / len(SIDES) if students else 0.0)
        ax.annotate(
            row.verdict,
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 3),
            textcoords="offset points",
            ha="center",
            va="bottom",
            rotation=90,
            fontsize=7,
            color=VERDICT_COLORS.get(row.verdict, "black"),
        )
    ax.set_ylabel("MoE advantage\n(matching MLP width /\nactive neurons)")
    ax.legend(loc="upper right", fontsize=7)


def budget_label(profile: pd.DataFrame) -> str:
    """The budget the profile's advantages were measured at, in words: its last rung, its ladder, rows and seeds."""
    parts = []
    for (epochs, ladder, rows), group in profile.groupby(["epochs", "ladder", "rows"], dropna=False):
        ladder = "" if pd.isna(ladder) or ladder == "" else f" (ladder {ladder})"
        seeds = pd.to_numeric(group.seeds, errors="coerce").max()  # a layer without a verdict has none
        seeds = "" if pd.isna(seeds) else f", {int(seeds)} seeds"
        epochs = "? epochs" if pd.isna(epochs) else f"{int(epochs)} epochs"
        rows = "" if pd.isna(rows) else f", {int(rows):,} train rows"
        parts.append(f"{epochs}{ladder}{rows}{seeds}")
    return "budget: " + "; ".join(parts)


def scan(profile: pd.DataFrame, title: str, pdf: str | Path, png: str | Path) -> plt.Figure:
    """Top: the MoE advantage of each layer on real inputs and on the Gaussian control (mean over seeds with its
    interval; hollow where `hollow`), 1 (no advantage) as a dashed line and the verdict word above each layer.
    Below, one panel per statistic of PANELS: its value on the layer's real inputs and on their Gaussian twin."""
    fig, axes = plt.subplots(
        1 + len(PANELS), 1, sharex=True, figsize=(7.5, 2.4 + 1.7 * len(PANELS)), height_ratios=[2] + [1] * len(PANELS)
    )
    _advantage(axes[0], profile)
    layers = profile.drop_duplicates("layer").sort_values("layer")
    for ax, (stem, label, scale) in zip(axes[1:], PANELS, strict=True):
        for side, (name, colour, marker, style) in SIDES.items():
            values = pd.to_numeric(layers[f"{stem}_{side}"], errors="coerce")
            ax.plot(layers.layer, values, marker=marker, ls=style, color=colour, label=name, ms=4)
        if scale == "symlog" and values.abs().max() > 10:  # heavy tails: linear up to 1, logarithmic beyond
            ax.set_yscale("symlog", linthresh=1.0)
        ax.yaxis.set_major_formatter(FuncFormatter(plain_number))
        ax.set_ylabel(label, fontsize=8)
    axes[1].legend(loc="best", fontsize=7)
    axes[-1].set_xlabel("Layer (depth)")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    key = "hollow: undecided or unconverged; ▲ lower bound, ▼ upper bound, no bar: no bound either way"
    fig.suptitle(f"{title}\n{budget_label(profile)}\n{key}", fontsize=10)
    _save(fig, pdf, png)
    return fig
