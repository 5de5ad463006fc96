"""The scan figure draws what the profile holds: each layer's advantage on real and Gaussian inputs at its depth
(hollow when undecided or unconverged, a triangle for a bound, whose bar runs to the edge of the axis), the verdict
words, and every statistic of both sides on the panels below, read back from the figure's artists; one layer as
readable as many."""

from __future__ import annotations

import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.markers import CARETDOWNBASE, CARETUPBASE

from secret_moe.scan.figure import PANELS, SIDES, bar, hollow, offsets, scan
from secret_moe.scan.profile import COLUMNS
from secret_moe.steps.figures import plot_scan

MOE = "moe_lowrank_r32_m64_s4_k4"


def profile() -> pd.DataFrame:
    """Three layers: supported and converged; undecided with an unconverged MoE (a lower bound on real data);
    contradicted with an upper bound on the Gaussian side."""
    rows = []
    for layer, word, converged, (real_low, real, real_high), gauss_low in (
        (0, "supports", True, (1.4, 1.8, 2.4), 0.8),
        (3, "undecided", False, (0.9, 1.2, math.inf), 0.9),
        (5, "contradicts", True, (0.4, 0.6, 0.9), 0.0),
    ):
        row = dict.fromkeys(COLUMNS)
        row |= {"model": "tiny", "layer": layer, "student": MOE, "active_neurons": 8, "verdict": word}
        row |= {"converged": converged, "advantage_real": real, "real_low": real_low, "real_high": real_high}
        row |= {"advantage_gaussian": 1.0, "gaussian_low": gauss_low, "gaussian_high": 1.3}
        for stem, _, _ in PANELS:
            row[f"{stem}_real"], row[f"{stem}_gaussian"] = 5.0 + layer, 0.1 * layer
        rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def drawn_markers(ax) -> list[tuple[float, float, str, bool]]:
    """(x, y, marker, hollow) of every errorbar's data point."""
    points = []
    for container in ax.containers:
        line = container.lines[0]
        x, y = line.get_xdata()[0], line.get_ydata()[0]
        points.append(
            (round(float(x), 9), round(float(y), 9), line.get_marker(), line.get_markerfacecolor() == "white")
        )
    return sorted(points)


def test_the_advantage_panel_draws_every_layer_and_side_as_in_the_table(tmp_path):
    table = profile()
    fig = scan(table, "tiny", tmp_path / "scan.pdf", tmp_path / "scan.png")
    top = fig.axes[0]
    where = offsets([MOE])
    expected = []
    for _, row in table.iterrows():
        for side in SIDES:
            marker, _, _ = bar(row[f"advantage_{side}"], row[f"{side}_low"], row[f"{side}_high"])
            x = row.layer + where[(MOE, side)]
            expected.append((round(x, 9), round(row[f"advantage_{side}"], 9), marker, hollow(row)))
    assert drawn_markers(top) == sorted(expected)
    markers = {(m, h) for _, _, m, h in drawn_markers(top)}
    assert ("^", True) in markers and ("v", False) in markers and ("o", False) in markers
    assert [t.get_text() for t in top.texts] == ["supports", "undecided", "contradicts"]
    assert "advantage" in top.get_ylabel().lower()


def test_the_statistics_panels_share_the_layer_axis_and_draw_both_sides(tmp_path):
    table = profile()
    fig = scan(table, "tiny", tmp_path / "scan.pdf", tmp_path / "scan.png")
    assert len(fig.axes) == 1 + len(PANELS)
    for ax, (stem, _, _) in zip(fig.axes[1:], PANELS, strict=True):
        assert ax.get_shared_x_axes().joined(ax, fig.axes[0])
        lines = {line.get_label(): line for line in ax.get_lines()}
        for side, (label, *_) in SIDES.items():
            assert list(lines[label].get_xdata()) == [0, 3, 5]
            assert list(lines[label].get_ydata()) == pytest.approx(list(table[f"{stem}_{side}"]))
    assert fig.axes[-1].get_xlabel() == "Layer (depth)"


def test_a_side_open_both_ways_is_a_hollow_point_without_a_bar(tmp_path):
    table = profile()
    table.loc[1, ["gaussian_low", "gaussian_high"]] = [0.0, math.inf]  # layer 3: MoE and MLPs unconverged
    assert bar(1.0, 0.0, math.inf)[0] == "o" and math.isnan(bar(1.0, 0.0, math.inf)[1])
    fig = scan(table, "tiny", tmp_path / "scan.pdf", tmp_path / "scan.png")
    x = 3 + offsets([MOE])[(MOE, "gaussian")]
    (point,) = [c for c in fig.axes[0].containers if abs(c.lines[0].get_xdata()[0] - x) < 1e-9]
    assert point.lines[0].get_marker() == "o" and point.lines[0].get_markerfacecolor() == "white"
    assert not point.has_yerr
    assert sum(c.has_yerr for c in fig.axes[0].containers) == 5


def test_the_step_draws_from_the_csv(tmp_path):
    table = profile()
    table.to_csv(tmp_path / "profile.csv", index=False)
    pdf, png = tmp_path / "scan.pdf", tmp_path / "scan.png"
    fig = plot_scan(str(tmp_path / "profile.csv"), model="tiny", pdf=str(pdf), png=str(png))
    assert pdf.read_bytes()[:5] == b"%PDF-" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    assert np.unique(image.reshape(-1, image.shape[-1]), axis=0).shape[0] > 20  # not a blank canvas
    assert len(fig.axes[0].containers) == 6  # the bound survives the CSV (inf), the flags too
    assert [t.get_text() for t in fig.axes[0].texts] == list(table.verdict)


def test_a_layer_without_an_advantage_is_left_out_of_the_top_panel_only(tmp_path):
    table = profile()
    table.loc[1, ["advantage_real", "advantage_gaussian"]] = np.nan
    fig = scan(table, "tiny", tmp_path / "scan.pdf", tmp_path / "scan.png")
    assert len(fig.axes[0].containers) == 4
    assert len(fig.axes[1].get_lines()[0].get_xdata()) == 3


def bar_ends(ax, x: float) -> tuple[float, float] | None:
    """The drawn ends of the errorbar at `x` (None: no bar)."""
    (container,) = [c for c in ax.containers if abs(c.lines[0].get_xdata()[0] - x) < 1e-9]
    if not container.has_yerr:
        return None
    (segment,) = container.lines[2][-1].get_segments()
    return tuple(sorted(float(y) for _, y in segment))


def test_a_bound_runs_to_the_edge_of_the_axis_never_to_a_finite_end(tmp_path):
    """Layer 3's real side is a lower bound [0.9, inf): its bar ends at the top of the axis, with an arrowhead there;
    layer 5's Gaussian side an upper bound [0, 1.3]: from the bottom of the axis; layer 0 an interval, as it is."""
    fig = scan(profile(), "tiny", tmp_path / "scan.pdf", tmp_path / "scan.png")
    top = fig.axes[0]
    bottom_edge, top_edge = top.get_ylim()
    where = offsets([MOE])
    assert bar_ends(top, 3 + where[(MOE, "real")]) == (0.9, top_edge)
    assert bar_ends(top, 5 + where[(MOE, "gaussian")]) == (bottom_edge, 1.3)
    assert bar_ends(top, 0 + where[(MOE, "real")]) == (1.4, 2.4)
    assert bar(1.2, 0.9, math.inf, (bottom_edge, top_edge)) == ("^", 0.9, top_edge)
    carets = {
        (round(float(line.get_xdata()[0]), 9), float(line.get_ydata()[0])): line.get_marker()
        for line in top.get_lines()
        if line.get_marker() in (CARETUPBASE, CARETDOWNBASE)
    }
    assert carets == {
        (round(3 + where[(MOE, "real")], 9), top_edge): CARETUPBASE,
        (round(5 + where[(MOE, "gaussian")], 9), bottom_edge): CARETDOWNBASE,
    }


def test_each_layer_has_its_own_tick(tmp_path):
    fig = scan(profile(), "tiny", tmp_path / "scan.pdf", tmp_path / "scan.png")
    assert list(fig.axes[-1].get_xticks()) == [0, 3, 5]
    assert [t.get_text() for t in fig.axes[-1].get_xticklabels()] == ["0", "3", "5"]


def one_layer() -> pd.DataFrame:
    """The default run's profile: one layer, bounds only on both sides, a participation ratio of 37.2 against the
    twin's 37.3."""
    table = profile().iloc[[1]].copy()
    table["layer"] = 9
    table[["real_low", "real_high", "gaussian_low", "gaussian_high"]] = [0.0, math.inf, 0.0, math.inf]
    table[["participation_ratio_real", "participation_ratio_gaussian"]] = [37.2, 37.3]
    return table


def test_a_one_layer_scan_is_a_table_like_panel_not_a_stretched_axis(tmp_path):
    table = one_layer()
    fig = scan(table, "tiny", tmp_path / "scan.pdf", tmp_path / "scan.png")
    axis = fig.axes[-1]
    assert list(axis.get_xticks()) == [9] and [t.get_text() for t in axis.get_xticklabels()] == ["9"]
    low, high = axis.get_xlim()
    assert low < 9 < high and high - low <= 2  # one layer wide, no fractional ticks around it
    # the two sides at the same layer, a small offset apart, in the advantage panel and in every statistic's
    drawn = sorted(c.lines[0].get_xdata()[0] for c in fig.axes[0].containers)
    assert drawn == pytest.approx([9 + offsets([MOE])[(MOE, side)] for side in SIDES]) and drawn[1] - drawn[0] < 0.2
    for ax, (stem, _, _) in zip(fig.axes[1:], PANELS, strict=True):
        lines = {line.get_label(): line for line in ax.get_lines()}
        xs = [float(lines[label].get_xdata()[0]) for label, *_ in SIDES.values()]
        assert xs == pytest.approx(drawn)
        assert {t.get_text() for t in ax.texts} == {f"{table[f'{stem}_{side}'].iloc[0]:.3g}" for side in SIDES}
    # a participation ratio of 37.2 against 37.3 does not fill its panel: the axis includes 0
    ratio = fig.axes[1 + [stem for stem, _, _ in PANELS].index("participation_ratio")]
    bottom, top = ratio.get_ylim()
    assert bottom <= 0 and (37.3 - 37.2) / (top - bottom) < 0.01
    # bounds only: no bar on either side
    assert not any(c.has_yerr for c in fig.axes[0].containers)
