"""The budget ladder through the real Snakefile: one run per student gives every rung, the verdict at every
rung, the ladder figure, and an interrupted run resumes, from the checkpoint of the bundle it was training, to the
same bytes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from secret_moe import figures
from secret_moe.layout import RUN_FILES
from secret_moe.testing import (
    TINY_MOE,
    run_snakemake,
    snakemake_command,
    tiny_project,
    write_config,
)
from secret_moe.verdict import WORDS

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MOE = TINY_MOE


def snakemake(project: Path, *args: str) -> subprocess.CompletedProcess:
    result = run_snakemake(project / "work", *args, configfile=project / "config.yaml")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def run_bytes(project: Path) -> dict[str, bytes]:
    """Every run folder's metrics.json and weights."""
    return {
        str(path.relative_to(project)): path.read_bytes()
        for name in RUN_FILES
        for path in sorted((project / "work/results/distill").rglob(name))
    }


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = tmp_path_factory.mktemp("ladder")
    config = tiny_project(project, {"train": 300, "validation": 80}, experiments={})
    config["distill"] |= {
        "epochs": 4,
        "learning_rates": [0.003],
        "seeds": [0, 1],
        "schedule": {"kind": "wsd", "warmup_epochs": 0, "cooldown_fraction": 0.5, "rungs": 2},
        "checkpoint_minutes": 0,  # after every epoch: 5 epochs per bundle, trunk and cooldown branch
    }
    config["experiments"] = {"budget_check": {"enabled": True, "tolerance": 0.03}}
    write_config(project / "config.yaml", config)
    snakemake(project, "figures/all", "--cores", "2")
    return project


def test_one_run_per_student_gives_every_rung(project):
    runs = sorted(p.name for p in (project / "work/results/distill").rglob("e*_lr*_seed*"))
    assert runs and all(name.startswith("e4_") for name in runs)  # no extra runs at the shorter budget
    table = pd.read_csv(project / "work/results/aggregate/runs.csv")
    assert sorted(table.epochs.unique()) == [2, 4] and set(table.run_epochs) == {4}
    metrics = json.loads(next((project / "work/results/distill").rglob("metrics.json")).read_text())
    assert [rung["epochs"] for rung in metrics["rungs"]] == [2, 4]
    assert metrics["rungs"][-1]["history"] == metrics["history"]
    # the 2-epoch rung cooled down on its own: its second epoch differs from the 4-epoch run's second epoch
    assert metrics["rungs"][0]["history"][1]["val_fvu"] != metrics["history"][1]["val_fvu"]


def test_the_verdict_at_every_rung(project):
    ladder = pd.read_csv(project / "work/results/aggregate/ladder.csv")
    mine = ladder[ladder.student == MOE]
    assert list(mine.epochs) == [2, 4]
    assert set(mine.verdict) <= set(WORDS)
    first = mine.iloc[0]
    assert first.verdict == "undecided" and not first.converged  # nothing to compare the first rung to
    check = pd.read_csv(project / "work/results/aggregate/budget_check.csv")
    assert set(check.epochs) == {2} and set(check.epochs_long) == {4}
    assert set(check.seed) == {0, 1}  # a ladder checks every seed
    verdict = pd.read_csv(project / "work/results/aggregate/verdict.csv")
    last = mine.iloc[-1]
    assert verdict[verdict.student == MOE].iloc[0].verdict == last.verdict


def test_the_ladder_figure_draws_every_students_mean_fvu_at_every_rung(project):
    assert (project / "work/figures/tiny/layer1/ladder.png").stat().st_size > 0
    runs = pd.read_csv(project / "work/results/aggregate/runs.csv", keep_default_na=False, na_values=[""])
    out = project / "redrawn"
    out.mkdir()
    fig = figures.ladder(runs, 0.03, "tiny", out / "l.pdf", out / "l.png")
    drawn = {}
    for ax in fig.axes:
        for container in ax.containers:  # one errorbar per student: its line and its bars
            line = container.lines[0]
            drawn[(ax.get_title(), container.get_label())] = (list(line.get_xdata()), list(line.get_ydata()))
    expected = runs.groupby(["data", "student", "epochs"]).best_fvu.mean()  # one learning rate: best = the run
    assert len(drawn) == runs.groupby(["data", "student"]).ngroups
    for (title, student), (x, y) in drawn.items():
        data = {v: k for k, v in figures.DATA_TITLES.items()}[title]
        assert x == [2, 4]
        assert np.allclose(y, [expected[(data, student, e)] for e in x])


def checkpoints(project: Path) -> list[Path]:
    return sorted((project / "work/results/checkpoints").rglob("*.pt"))


def test_an_interrupted_ladder_run_resumes_to_the_same_bytes(project, tmp_path):
    finished = run_bytes(project)
    project = shutil.copytree(project, tmp_path / "copy", symlinks=True)  # the other tests read the original
    assert run_bytes(project) == finished and checkpoints(project) == []  # a finished bundle leaves none
    for done in ("results/distill", "results/aggregate", "figures", "logs/train_students"):  # all after the stores
        shutil.rmtree(project / "work" / done)
    with open(project / "interrupted.log", "w") as output:
        process = subprocess.Popen(
            snakemake_command(project / "work", "figures/all", "--cores", "1", configfile=project / "config.yaml"),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 600
        while not checkpoints(project) and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.002)  # a bundle of the tiny store trains an epoch in milliseconds
        if process.poll() is not None:
            tail = (project / "interrupted.log").read_text()[-3000:]
            pytest.fail(f"Snakemake ended (exit {process.returncode}) before it could be interrupted:\n{tail}")
        os.killpg(process.pid, signal.SIGKILL)  # Snakemake and its running job, as a killed session would
        process.wait()
    (killed,) = checkpoints(project)  # the kill landed while a bundle trained, after its first epoch
    assert len(run_bytes(project)) < len(finished), "the kill should land before the last run"
    log = project / "work/logs/train_students" / killed.relative_to(project / "work/results/checkpoints")
    snakemake(project, "--unlock")  # the killed Snakemake left its lock, as after a killed session
    snakemake(project, "figures/all", "--cores", "2", "--rerun-incomplete")
    rerun = log.with_suffix(".log").read_text()  # the rerun job's log (Snakemake deletes the killed job's)
    assert re.search(r"resumed from epoch \d+", rerun), rerun[-3000:]
    trained = re.search(r"(\d+) epochs trained in this process, 5 in all", rerun)
    assert trained and int(trained.group(1)) < 5  # only the epochs left after the checkpoint
    assert run_bytes(project) == finished
    assert checkpoints(project) == []
