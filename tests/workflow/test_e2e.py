"""The real Snakefile, end to end on the tiny config: activation stores, then every figure, then a report.

Runs once per module: first the activation-store targets alone, then `figures/all`; the tests inspect what
the run left behind and never change it (the one that edits the config works on a copy), so each passes
alone and in any order.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
import zarr

from secret_moe import layout
from secret_moe.testing import (
    TINY_STUDENTS,
    run_snakemake,
    tiny_project,
    write_config,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
ACTIVATIONS = [f"results/activations/tiny/layer1/{split}.zarr" for split in ("train", "validation")]
FIGURES = ["fvu_vs_active", "learning_curves", "router_comparison", "shared_split"]
STUDENTS = set(TINY_STUDENTS)


def snakemake(run_dir: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    return run_snakemake(run_dir / "work", *args, configfile=run_dir / "config.yaml", timeout=timeout)


def logs_of(run_dir: Path) -> str:
    """The tail of every job log, for failure messages."""
    return "\n".join(
        f"--- {log}\n{log.read_text()[-1500:]}" for log in sorted((run_dir / "work" / "logs").rglob("*.log"))
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("e2e")
    config = tiny_project(run_dir, {"train": 400, "validation": 100})
    # the main comparison (3 students) again at twice the epochs, for the verdict's budget check
    config["experiments"]["budget_check"] = {"enabled": True, "factor": 2, "seeds": [0], "tolerance": 0.03}
    write_config(run_dir / "config.yaml", config)

    cores = ["--cores", "2"]
    stores = snakemake(run_dir, *ACTIVATIONS, *cores)  # targets first: --resources takes many values
    assert stores.returncode == 0, stores.output[-4000:] + logs_of(run_dir)
    stores_jobs = job_counts(stores.output)
    full = snakemake(run_dir, "figures/all", *cores)
    assert full.returncode == 0, full.output[-4000:] + logs_of(run_dir)
    return {"dir": run_dir, "work": run_dir / "work", "stores_jobs": stores_jobs, "full": full}


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule in Snakemake's job-stats table."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", output, re.MULTILINE)}


def test_activation_stores_alone_need_only_their_upstream_jobs(run):
    # the store targets alone run the model's preparation, tokens and the two captures, nothing downstream
    assert {k: v for k, v in run["stores_jobs"].items() if k != "total"} == {
        "prepare_tokenizer": 1,
        "tokenise_corpus": 1,
        "prepare_model": 1,
        "capture_activations": 2,
    }
    for store in ACTIVATIONS:
        group = zarr.open_group(str(run["work"] / store), mode="r")
        assert group["x"].shape[0] > 0 and group["x"].shape == group["y"].shape
        assert group.attrs["model_id"] == "local/tiny-gpt-neox" and group.attrs["layer"] == 1
        assert not (run["work"] / f"{store}.partial").exists()


def test_every_figure_exists(run):
    listed = (run["work"] / "figures" / "all").read_text().split()
    expected = [f"figures/tiny/layer1/{name}.{ext}" for name in FIGURES for ext in ("pdf", "png")]
    expected += [f"figures/verdict.{ext}" for ext in ("pdf", "png")]
    expected += [f"figures/tiny/scan.{ext}" for ext in ("pdf", "png")]  # the layer profile (docs/scan.md)
    assert sorted(listed) == sorted(expected)
    for path in expected:
        data = (run["work"] / path).read_bytes()
        assert len(data) > 2000
        assert data[:4] in (b"%PDF", b"\x89PNG")


def test_results_table_has_the_expected_runs(run):
    runs = pd.read_csv(run["work"] / "results" / "aggregate" / "runs.csv")
    # 2 data x 7 students x 2 learning rates x 1 seed, and the 3 main students again at 4 epochs
    assert len(runs) == 28 + 12
    assert runs.groupby("epochs").size().to_dict() == {2: 28, 4: 12}
    runs = runs[runs.epochs == 2]
    assert set(runs.student) == STUDENTS
    assert set(runs.data) == {"activations", "gaussian"}
    assert sorted(set(runs.lr)) == [0.001, 0.003]
    assert runs.groupby(["data", "student"]).size().eq(2).all()
    assert np.isfinite(runs.best_fvu).all() and (runs.best_fvu > 0).all()
    # each run's best and final FVU are those of its learning curve (another table, from the same metrics)
    curves = pd.read_csv(run["work"] / "results" / "aggregate" / "curves.csv")
    per_run = curves[curves.epochs == 2].groupby(["data", "student", "lr"]).val_fvu
    indexed = runs.set_index(["data", "student", "lr"])
    assert np.allclose(indexed.best_fvu, per_run.min().loc[indexed.index])
    assert np.allclose(indexed.final_fvu, per_run.last().loc[indexed.index])
    best = pd.read_csv(run["work"] / "results" / "aggregate" / "best.csv")
    assert len(best) == 14
    for _, row in best.iterrows():
        point = runs[(runs.data == row.data) & (runs.student == row.student)]
        assert row.best_fvu == pytest.approx(point.best_fvu.min())
    families = dict(
        zip(best[best.data == "activations"].student, best[best.data == "activations"].families, strict=False)
    )
    assert set(families["moe_lowrank_r8_m64_s4_k4"].split(";")) == {"main", "shared_split"}
    assert families["moe_fullrank_m64_s4_k4"] == "router_rank"


def test_distilled_students_learn_something(run):
    curves = pd.read_csv(run["work"] / "results" / "aggregate" / "curves.csv")
    assert len(curves) == 28 * 2 + 12 * 4  # two epochs per run, four for the budget check's
    curves = curves[curves.epochs == 2]
    by_epoch = curves.pivot_table(index=["data", "student", "lr"], columns="epoch", values="val_fvu")
    assert (by_epoch[2] < by_epoch[1]).all()  # every run's validation FVU falls from epoch 1 to 2
    runs = pd.read_csv(run["work"] / "results" / "aggregate" / "runs.csv")
    best = runs[runs.epochs == 2].groupby(["data", "student"]).best_fvu.min()
    # the widest dense student beats the narrowest on real activations
    assert best[("activations", "mlp_h16")] < best[("activations", "mlp_h4")]


def test_a_second_run_has_nothing_to_do(run):
    again = snakemake(run["dir"], "-n", "figures/all")
    assert again.returncode == 0, again.output[-3000:]
    assert "Nothing to be done" in again.output, again.output[-3000:]


def test_a_new_precision_retrains_every_run(run):
    """`distill.precision` decides a run: bfloat16 makes all 40 runs stale (in bundles), and float32 written out
    is the float32 the runs were trained in (nothing to do)."""
    config = run["dir"] / "config.yaml"
    original = config.read_text()
    settings = yaml.safe_load(original)
    try:
        plans = {}
        for precision in ("bfloat16", "float32"):
            settings["distill"]["precision"] = precision
            write_config(config, settings)
            plans[precision] = snakemake(run["dir"], "-n", "figures/all")
            assert plans[precision].returncode == 0, plans[precision].output[-3000:]
    finally:
        config.write_text(original)
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", plans["bfloat16"].output, re.MULTILINE)}
    assert counts["collect_run"] == 40 and 0 < counts["train_students"] < 40
    assert "Nothing to be done" in plans["float32"].output, plans["float32"].output[-3000:]


def test_report_is_a_self_contained_html_file(run):
    report = run["dir"] / "report.html"
    result = snakemake(run["dir"], "--report", str(report))
    assert result.returncode == 0, result.output[-3000:]
    html = report.read_text(errors="replace")
    assert report.stat().st_size > 50_000
    assert html.lstrip().lower().startswith("<!doctype html") or "<html" in html[:1000].lower()
    assert "fvu_vs_active" in html
    assert "Verdict" in html and "verdict.csv" in html and "budget_check.csv" in html  # the verdict's section
    assert '<script src="http' not in html and '<link href="http' not in html


def test_verdict_and_budget_check_tables(run):
    aggregate = run["work"] / "results" / "aggregate"
    check = pd.read_csv(aggregate / "budget_check.csv")
    assert len(check) == 6  # the 3 main students on 2 data, seed 0
    assert set(check.epochs) == {2} and set(check.epochs_long) == {4}
    # both budgets' FVUs are the runs' best over learning rates, and the change is relative to the longer one
    runs = pd.read_csv(aggregate / "runs.csv")
    for row in check.itertuples():
        point = runs[(runs.data == row.data) & (runs.student == row.student) & (runs.seed == 0)]
        assert row.fvu == pytest.approx(point[point.epochs == 2].best_fvu.min())
        assert row.fvu_long == pytest.approx(point[point.epochs == 4].best_fvu.min())
        assert row.fvu_change == pytest.approx(abs(row.fvu_long - row.fvu) / row.fvu_long)
    verdict = pd.read_csv(aggregate / "verdict.csv")
    assert list(verdict.student) == ["moe_lowrank_r8_m64_s4_k4"]
    row = verdict.iloc[0]
    assert row.seeds == 1 and row.verdict == "undecided"  # one seed: no interval, whatever the means
    assert np.isnan(row.real_low)
    assert row.convergence.split(":")[0] in ("yes", "no")


def test_each_run_folder_holds_only_its_files_and_bundles_are_gone(run):
    folders = sorted((run["work"] / "results" / "distill" / "tiny" / "layer1" / "activations").iterdir())
    assert "bundles" not in [f.name for f in folders] or not any((folders[0].parent / "bundles").iterdir())
    metrics = list((run["work"] / "results" / "distill").rglob("metrics.json"))
    assert len(metrics) == 40
    for path in metrics:
        assert sorted(p.name for p in path.parent.iterdir()) == ["metrics.json", "student.safetensors", "timing.json"]


def copy_with_mlp_h6(run: dict, tmp_path: Path) -> tuple[Path, Path, dict]:
    """A copy of the finished run whose config adds an MLP of width 6: (copy, its work folder, its settings)."""
    copy = tmp_path / "copy"
    shutil.copytree(run["dir"], copy, symlinks=True)  # copy2 keeps the files' times, which Snakemake compares
    assert "Nothing to be done" in snakemake(copy, "-n", "figures/all").output  # the copy is the finished run
    settings = yaml.safe_load((copy / "config.yaml").read_text())
    settings["distill"]["mlp_widths"].append(6)
    write_config(copy / "config.yaml", settings)
    return copy, copy / "work", settings


def test_adding_a_student_trains_only_that_student(run, tmp_path):
    """Adds an MLP width to the config of a copy of the run, then checks that nothing finished is redone."""
    copy, work, _ = copy_with_mlp_h6(run, tmp_path)
    finished = {p: p.stat().st_mtime_ns for p in (work / "results" / "distill").rglob("metrics.json")}
    plan = snakemake(copy, "-n", "figures/all")
    assert plan.returncode == 0, plan.output[-3000:]
    counts = job_counts(plan.output)
    # mlp_h6 joins the main comparison: 2 data x 2 learning rates at 2 epochs, and the budget check's
    # 2 data x 2 learning rates at 4 epochs; one bundle per store and budget, holding only the new runs
    assert counts["collect_run"] == 8 and counts["train_students"] == 4
    assert set(counts) - {"collect_run", "train_students", "total"} <= {
        "aggregate_runs",
        "plot_figure",
        "plot_verdict",
        "profile_layers",
        "plot_scan",
        "all_figures",
    }
    new = snakemake(copy, "figures/all", "--cores", "2")
    assert new.returncode == 0, new.output[-3000:] + logs_of(copy)
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in finished.items())
    runs = pd.read_csv(work / "results" / "aggregate" / "runs.csv")
    assert len(runs[runs.student == "mlp_h6"]) == 8 and len(runs) == 48


def test_runs_left_in_a_finished_bundle_are_copied_out_not_trained_again(run, tmp_path):
    """Snakemake stops after training a bundle and copying one of its runs out: the next `figures/all` copies the
    others out of that bundle (before the fix it planned them into a new bundle and trained them again)."""
    copy, work, settings = copy_with_mlp_h6(run, tmp_path)
    where = {"model": "tiny", "layer": 1, "data": "activations", "student": "mlp_h6", "seed": 0}
    one = layout.path("run", **where, epochs=settings["distill"]["epochs"], lr=settings["distill"]["learning_rates"][0])
    first = snakemake(copy, "--notemp", "--cores", "1", f"{one}/metrics.json")  # the bundle stays: "stopped"
    assert first.returncode == 0 and (work / one / "metrics.json").is_file(), first.output[-3000:]
    plan = snakemake(copy, "-n", "figures/all")
    counts = job_counts(plan.output)
    # the three other bundles of mlp_h6 only (the old code planned 5 train_students jobs here)
    assert counts["train_students"] == 3 and counts["collect_run"] == 7, plan.output[-3000:]
    done = snakemake(copy, "figures/all", "--cores", "2")
    assert done.returncode == 0, done.output[-3000:] + logs_of(copy)
    assert len(pd.read_csv(work / "results" / "aggregate" / "runs.csv")) == 48
