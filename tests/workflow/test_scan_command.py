"""`secret-moe scan` end to end: the real command (`python -m secret_moe.cli scan`) on a tiny model folder of three
layers with a tiny budget file runs the real Snakefile to the layer profile and its figure; the profile has one row
per layer with every column, its verdict and statistics agree with the tables it was made from, the figure draws the
profile, and a second run of the same command has nothing to do (Snakemake resumes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from secret_moe.scan.figure import SIDES, offsets
from secret_moe.scan.profile import COLUMNS
from secret_moe.steps.figures import plot_scan
from secret_moe.testing import run_snakemake, save_tiny_model, tiny_scan_budget, write_tiny_corpus
from secret_moe.verdict import WORDS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "PYTHONUNBUFFERED": "1",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
}


def scan_command(root: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "secret_moe.cli", "scan", str(root / "tiny-model"), "--budget"]
    command += [str(root / "tests-tiny.yaml"), "--corpus", str(root / "train.txt"), str(root / "validation.txt")]
    result = subprocess.run(
        [*command, "--cores", "2", *extra],
        cwd=root / "work",
        env=ENV,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    result.output = result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    save_tiny_model(root / "tiny-model", "gpt_neox", seed=0)  # three layers, d = 32
    write_tiny_corpus(root, {"train": 400, "validation": 100}, seed=0)
    (root / "tests-tiny.yaml").write_text(yaml.safe_dump(tiny_scan_budget()))
    (root / "work").mkdir()
    result = scan_command(root)
    logs = "\n".join(f"--- {f}\n{f.read_text()[-1500:]}" for f in sorted((root / "work" / "logs").rglob("*.log")))
    assert result.returncode == 0, result.output[-5000:] + logs
    return {"root": root, "work": root / "work", "result": result}


def test_the_command_prints_its_plan_and_a_line_per_finished_job(scanned):
    out = scanned["result"].stdout
    assert "36 training runs (3 layers x 2 data x 3 students x 2 seeds x 1 learning rate)" in out
    assert "estimated distillation time on this machine:" in out
    for layer in (0, 1, 2):
        assert f"done: describe_inputs (layer {layer})" in out
    assert "done: profile_layers" in out and "done: plot_scan" in out


def test_the_written_config_is_complete_and_captures_every_layer_in_one_pass(scanned):
    config = yaml.safe_load((scanned["work"] / "results" / "scan" / "tiny-model" / "config.yaml").read_text())
    assert config["models"]["tiny-model"]["layers"] == [0, 1, 2]
    assert config["models"]["tiny-model"]["source"] == "local" and config["capture"]["one_pass"] == ["tiny-model"]
    assert config["distill"] == tiny_scan_budget()["distill"]
    logs = scanned["work"] / "logs"
    assert len(list((logs / "capture_layers").rglob("*.log"))) == 2  # one forward pass per split
    assert len(list((logs / "benchmarks" / "describe_inputs").rglob("*.tsv"))) == 3


def test_the_profile_has_one_row_per_layer_from_the_verdict_and_the_statistics(scanned):
    work = scanned["work"]
    profile = pd.read_csv(work / "results" / "scan" / "tiny-model" / "profile.csv")
    assert list(profile.columns) == list(COLUMNS) and list(profile.layer) == [0, 1, 2]
    assert set(profile.verdict) <= set(WORDS)
    verdict = pd.read_csv(work / "results" / "aggregate" / "verdict.csv").sort_values("layer", ignore_index=True)
    for key in ("advantage_real", "real_low", "advantage_gaussian", "gaussian_high", "verdict", "converged"):
        pd.testing.assert_series_equal(profile[key], verdict[key], check_names=False)  # NaN where no width matched
    assert list(profile.epochs) == [2, 2, 2] and list(profile.ladder) == ["1/2"] * 3
    for layer in (0, 1, 2):
        stats = pd.read_csv(work / "results" / "scan" / "tiny-model" / "input_stats" / f"layer{layer}.csv")
        row = profile[profile.layer == layer].iloc[0]
        real, twin = stats[stats.data == "activations"].iloc[0], stats[stats.data == "gaussian"].iloc[0]
        assert row.rows == real.rows == twin.rows > 0
        assert row.kurtosis_mean_real == pytest.approx(real.kurtosis_mean)
        assert row.participation_ratio_gaussian == pytest.approx(twin.participation_ratio)
        # the twin has the real inputs' covariance, hence about their participation ratio; it never repeats a row
        assert row.participation_ratio_gaussian == pytest.approx(row.participation_ratio_real, rel=0.25)
        assert row.largest_group_rows_gaussian == 1 and pd.isna(row.special_share_gaussian)


def test_the_figure_draws_the_profile(scanned, tmp_path):
    work = scanned["work"]
    png = work / "figures" / "tiny-model" / "scan.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000
    profile_csv = work / "results" / "scan" / "tiny-model" / "profile.csv"
    fig = plot_scan(str(profile_csv), model="tiny-model", pdf=str(tmp_path / "s.pdf"), png=str(tmp_path / "s.png"))
    profile = pd.read_csv(profile_csv)
    where = offsets(list(profile.student.unique()))
    drawn = sorted(
        (round(float(c.lines[0].get_xdata()[0]), 6), round(float(c.lines[0].get_ydata()[0]), 6))
        for c in fig.axes[0].containers
    )
    expected = sorted(
        (round(row.layer + where[(row.student, side)], 6), round(row[f"advantage_{side}"], 6))
        for _, row in profile.iterrows()
        for side in SIDES
        if pd.notna(row[f"advantage_{side}"])
    )
    assert drawn == expected
    assert [t.get_text() for t in fig.axes[0].texts] == list(profile.verdict)
    kurtosis = {line.get_label(): list(line.get_ydata()) for line in fig.axes[1].get_lines()}
    assert kurtosis["real activations"] == pytest.approx(list(profile.kurtosis_median_real))


def test_the_same_command_again_has_nothing_to_do(scanned):
    again = scan_command(scanned["root"])
    assert again.returncode == 0, again.output[-3000:]
    assert "Nothing to be done" in again.output


def test_the_profile_and_its_figure_are_in_the_html_report(scanned):
    work, report = scanned["work"], scanned["root"] / "report.html"
    targets = ["results/scan/tiny-model/profile.csv", "figures/tiny-model/scan.png", "--report", str(report)]
    configfile = work / "results" / "scan" / "tiny-model" / "config.yaml"  # the scan's targets
    result = run_snakemake(work, *targets, configfile=configfile, cwd=work, env=ENV, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    html = report.read_text(errors="replace")
    assert "scan.png" in html and "profile.csv" in html and "Scan" in html
