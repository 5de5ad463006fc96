"""benchmarks/copy_reference.py on a run folder laid out as the workflow lays it out: the tables it keeps, the
figures and a scan's files flattened into one folder, the per-run tables left out."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from copy_reference import copy_reference  # noqa: E402
from secret_moe.layout import path  # noqa: E402


def test_tables_figures_and_a_scan_are_copied_flat_and_the_per_epoch_curves_are_not(tmp_path):
    run = tmp_path / "run"
    files = {
        path("table", name="verdict"): "verdict",
        path("table", name="runs"): "runs",
        path("table", name="curves"): "curves",
        path("profile", model="tiny"): "profile",
        path("input_stats", model="tiny", layer=2): "stats",
        "figures/tiny/scan.png": "png",
        "figures/tiny/layer2/ladder.png": "ladder",
    }
    for name, text in files.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    log = tmp_path / "log.txt"
    log.write_text("WARNING: noise\nwall_s 12\n")
    copied = copy_reference(run, tmp_path / "ref", log)
    names = sorted(p.name for p in copied)
    assert names == sorted(
        [
            "verdict.csv",
            "runs.csv",
            "tiny_profile.csv",
            "tiny_input_stats_layer2.csv",
            "tiny_scan.png",
            "tiny_layer2_ladder.png",
        ]
        + ["timing.txt"]
    )
    assert (tmp_path / "ref" / "tiny_input_stats_layer2.csv").read_text() == "stats"
    timing = (tmp_path / "ref" / "timing.txt").read_text()
    assert "WARNING" not in timing and timing.startswith("wall_s 12\nmachine: ")
