"""The scan figure draws what the profile holds: each layer's advantage on real and Gaussian inputs at its depth
(hollow when undecided or unconverged, a triangle for a bound), the verdict words, and every statistic of both sides
on the panels below, read back from the figure's artists."""

from __future__ import annotations

import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

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
