"""The figure of a layer profile (`profile.profile_table`): the MoE advantage against layer depth, real inputs vs
the Gaussian control, above the statistics of each layer's inputs and of their Gaussian twin, on a shared x axis."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib import pyplot as plt
from matplotlib.ticker import FuncFormatter, MaxNLocator

from secret_moe.figures import (
    VERDICT_COLORS,
    _save,
    advantage_limits,
    bound_marker,
    draw_interval,
    interval_ends,
    open_sides,
    plain_number,
)

SIDES = {"real": ("real activations", "tab:blue", "o", "-"), "gaussian": ("Gaussian twin", "tab:orange", "s", "--")}
# The statistics drawn below the advantage: (column stem of the profile, axis label, y scale)
PANELS = (
    ("kurtosis_median", "Excess kurtosis\nof projections\n(median)", "symlog"),
    ("participation_ratio", "Participation\nratio", "linear"),
    ("largest_group_variance_share", "Var(y) share,\nlargest group\nof equal rows", "linear"),
)
SPREAD = 0.3  # the width, in layers, over which the real and Gaussian points of one layer are spread
MARGIN = 0.75  # the x axis runs this far, in layers, beyond the first and last layer: one layer is no stretched axis
TICKED = 24  # up to this many layers, each has its own tick; more, integer ticks where they fit
UPRIGHT = 6  # up to this many layers, the verdict words are upright; more, turned on their side


def offsets(students: list[str]) -> dict[tuple[str, str], float]:
    """x offset of each (student, side) point from its layer: real left of Gaussian, students side by side."""
    slots = [(student, side) for student in students for side in SIDES]
    step = SPREAD / len(slots)
    return {slot: (i + 0.5) * step - SPREAD / 2 for i, slot in enumerate(slots)}


def hollow(row: pd.Series) -> bool:
    """Drawn hollow: the layer's verdict is undecided, or a student of it failed (or missed) the budget check."""
    return row.verdict == "undecided" or row.converged not in (True, "True")  # a CSV may give the word


def bar(
    mean: float, low: float, high: float, limits: tuple[float, float] = (0.0, math.inf)
) -> tuple[str, float, float]:
    """The marker of an interval and the ends of its bar on an axis of y `limits` (figures.draw_interval draws both):
    ▲ a lower bound, its bar open to the top of the axis, ▼ an upper bound, open to the bottom; open on both sides,
    it bounds nothing: the point at that budget, no bar (nan ends)."""
    ends = interval_ends(low, high, limits)
    return bound_marker(low, high), *(ends if ends is not None else (math.nan, math.nan))


def _advantage(ax: plt.Axes, profile: pd.DataFrame) -> None:
    students = list(dict.fromkeys(profile.sort_values("active_neurons").student.dropna()))
    where, labelled = offsets(students or [""]), set()
    stems = list(SIDES)
    values = pd.concat([pd.to_numeric(profile[c]) for s in stems for c in (f"advantage_{s}", f"{s}_low", f"{s}_high")])
    top, bottom = open_sides(profile, stems)
    advantage_limits(ax, values, open_top=top, open_bottom=bottom)
    for _, row in profile.iterrows():
        for side, (label, colour, _, _) in SIDES.items():
            mean = row[f"advantage_{side}"]
            if pd.isna(mean):  # outside the measured MLP widths, or no verdict row
                continue
            x = row.layer + where[(row.student if students else "", side)]
            low, high = row[f"{side}_low"], row[f"{side}_high"]
            shown = None if label in labelled else label
            draw_interval(ax, x, mean, low, high, colour=colour, filled=not hollow(row), label=shown)
            labelled.add(label)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    upright = profile.layer.nunique() <= UPRIGHT
    for _, row in profile.iterrows():  # the words above the panel, where no bar reaches them
        x = row.layer + (sum(where[(row.student, s)] for s in SIDES) / len(SIDES) if students else 0.0)
        ax.annotate(
            row.verdict,
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 10),  # clear of an arrowhead on the top edge
            textcoords="offset points",
            ha="center",
            va="bottom",
            rotation=0 if upright else 90,
            fontsize=8 if upright else 7,
            color=VERDICT_COLORS.get(row.verdict, "black"),
        )
    ax.set_ylabel("MoE advantage\n(matching MLP width /\nactive neurons)")
    ax.legend(loc="upper right", fontsize=7)


def _statistic(ax: plt.Axes, layers: pd.DataFrame, stem: str, label: str, scale: str) -> None:
    """One statistic of PANELS on the real inputs and on their Gaussian twin, by layer, on an axis that includes 0, so
    that a difference of a fraction of a percent does not fill the panel; with one layer, the two values side by side
    (as in the advantage panel) and written out, like a table."""
    one = len(layers) == 1
    values = {side: pd.to_numeric(layers[f"{stem}_{side}"], errors="coerce") for side in SIDES}
    for (side, (name, colour, marker, style)), dx in zip(SIDES.items(), (-SPREAD / 4, SPREAD / 4), strict=True):
        x = layers.layer + (dx if one else 0.0)
        ax.plot(x, values[side], marker=marker, ls=style, color=colour, label=name, ms=4)
        if one:
            _write_value(ax, float(x.iloc[0]), values[side].iloc[0], left=dx < 0, colour=colour)
    finite = pd.concat(values.values()).dropna()
    if scale == "symlog" and finite.abs().max() > 10:  # heavy tails: linear up to 1, logarithmic beyond
        ax.set_yscale("symlog", linthresh=1.0)
    elif len(finite):
        low, high = min(finite.min(), 0.0), max(finite.max(), 0.0)
        span = (high - low) or 1.0
        ax.set_ylim(low - 0.12 * span, high + 0.12 * span)
    ax.yaxis.set_major_formatter(FuncFormatter(plain_number))
    ax.set_ylabel(label, fontsize=8)


def _write_value(ax: plt.Axes, x: float, value: float, *, left: bool, colour: str) -> None:
    """A statistic's value written beside its point, on the point's outer side."""
    text, y = ("n/a", 0.0) if pd.isna(value) else (f"{value:.3g}", value)
    side = {"xytext": (-6 if left else 6, 0), "ha": "right" if left else "left"}
    ax.annotate(text, (x, y), textcoords="offset points", va="center", fontsize=7, color=colour, **side)


def _layer_axis(ax: plt.Axes, layers: list[int]) -> None:
    """The shared x axis: each layer a tick (integer ticks where there are too many), MARGIN beyond the ends."""
    ax.set_xlim(min(layers) - MARGIN, max(layers) + MARGIN)
    if len(layers) <= TICKED:
        ax.set_xticks(layers, [str(layer) for layer in layers])
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("Layer (depth)")


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
    interval, a bound open to the edge of the axis: figures.draw_interval; hollow where `hollow`), 1 (no advantage)
    as a dashed line and the verdict word above each layer. Below, one panel per statistic of PANELS: its value on
    the layer's real inputs and on their Gaussian twin. Readable for one layer as for many (`_layer_axis`)."""
    fig, axes = plt.subplots(
        1 + len(PANELS), 1, sharex=True, figsize=(7.5, 2.4 + 1.7 * len(PANELS)), height_ratios=[2] + [1] * len(PANELS)
    )
    _advantage(axes[0], profile)
    layers = profile.drop_duplicates("layer").sort_values("layer")
    for ax, (stem, label, scale) in zip(axes[1:], PANELS, strict=True):
        _statistic(ax, layers, stem, label, scale)
    axes[1].legend(loc="best", fontsize=7)
    _layer_axis(axes[-1], [int(layer) for layer in layers.layer])
    key = "hollow: undecided or unconverged; arrow: a bound (▲ open to ∞, ▼ open to 0); no bar: bounds only"
    fig.suptitle(f"{title}\n{budget_label(profile)}\n{key}", fontsize=10)
    _save(fig, pdf, png)
    return fig
