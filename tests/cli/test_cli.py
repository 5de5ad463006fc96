"""The `secret-moe` command: declared as a console script; `scan` refuses bad arguments before it times, writes or
runs anything (so before any weights load), naming the argument; `--dry-run` prints the plan and writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from secret_moe import cli
from secret_moe.testing import tiny_scan_budget, write_tiny_corpus

REPO = Path(__file__).resolve().parents[2]


def test_pyproject_declares_the_console_script():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"secret-moe": "secret_moe.cli:main"}


@pytest.fixture
def work(tmp_path, monkeypatch):
    """An empty working folder as the current one, a model folder (config.json only: 3 layers, d = 32), a budget
    file and a corpus; nothing may time, write a config or start Snakemake unless a test allows it."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    model = tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text(
        json.dumps({"model_type": "gpt_neox", "num_hidden_layers": 3, "hidden_size": 32})
    )
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_scan_budget()))
    corpus = write_tiny_corpus(tmp_path, {"train": 50, "validation": 20})

    def refused(*args, **kwargs):
        raise AssertionError("the command went on past its checks")

    for name in ("estimate", "write_config", "run_snakemake"):
        monkeypatch.setattr(cli, name, refused)
    return {
        "dir": work,
        "model": model,
        "budget": tmp_path / "tiny.yaml",
        "corpus": [corpus["train"], corpus["validation"]],
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["{model}", "--layers", "0", "3", "--budget", "{budget}"],
            "--layers: layer 3 is out of range: tiny has 3 layers (0..2)",
        ),
        (["{tmp}/missing"], "MODEL: '{tmp}/missing' is no file or folder"),
        (["{tmp}/renamed.gguf"], "MODEL: file '{tmp}/renamed.gguf' is not a GGUF file"),
        (["{model}", "--budget", "{tmp}/none.yaml"], "--budget: '{tmp}/none.yaml' is no preset"),
        (["{model}", "--corpus", "{tmp}/none.txt", "{tmp}/none.txt"], "--corpus: file '{tmp}/none.txt' does not exist"),
        (
            ["{model}", "--corpus", "{tmp}/none.txt"],
            "--corpus: file '{tmp}/none.txt' does not exist (and it is neither",
        ),
        # the cheap arguments first: --budget is refused before MODEL (here a GGUF file that is not there) is read
        (["{tmp}/missing.gguf", "--budget", "{tmp}/none.yaml"], "--budget: '{tmp}/none.yaml' is no preset"),
        (["{tmp}/missing.gguf", "--corpus", "{tmp}/none.txt"], "--corpus: file '{tmp}/none.txt' does not exist"),
    ],
)
def test_bad_arguments_are_refused_before_anything_runs(work, capsys, arguments, message):
    tmp = work["dir"].parent
    (tmp / "renamed.gguf").write_bytes(b"\x00\x01 safetensors, renamed")
    values = {"model": work["model"], "tmp": tmp, "budget": work["budget"]}
    start = time.perf_counter()
    code = cli.main(["scan", *(a.format(**values) for a in arguments)])
    assert code == 2
    assert message.format(**values) in capsys.readouterr().err
    assert time.perf_counter() - start < 30
    assert list(work["dir"].iterdir()) == []  # no results/, no resources/, no config written


@pytest.mark.parametrize("cores", ["0", "-2", "two"])
def test_cores_must_be_at_least_one(work, capsys, cores):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["scan", str(work["model"]), "--cores", cores])
    assert exit_.value.code == 2
    expected = "'two' is not a whole number" if cores == "two" else f"must be at least 1, not {cores}"
    assert f"secret-moe scan: error: argument --cores: {expected}" in capsys.readouterr().err
    assert list(work["dir"].iterdir()) == []


def test_the_command_line_refuses_a_renamed_file_quickly(tmp_path):
    (tmp_path / "model.gguf").write_text("not a model\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "secret_moe.cli", "scan", str(tmp_path / "model.gguf")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"MODEL: file '{tmp_path}/model.gguf' is not a GGUF file" in done.stderr
    assert time.perf_counter() - start < 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.gguf"]


def test_a_dry_run_prints_the_runs_the_estimate_and_the_command_and_writes_nothing(work, capsys, monkeypatch):
    monkeypatch.undo()  # the real estimate this time; still nothing written or run
    monkeypatch.chdir(work["dir"])
    args = ["scan", str(work["model"]), "--budget", str(work["budget"]), "--corpus", *work["corpus"], "--dry-run"]
    assert cli.main([*args, "--cores", "2"]) == 0
    out = capsys.readouterr().out
    # 3 layers x 2 data x 3 students (MLP 4 and 16, one MoE) x 2 seeds
    assert "36 training runs (3 layers x 2 data x 3 students x 2 seeds x 1 learning rate)" in out
    assert "estimated distillation time on this machine:" in out and "on 2 cores (2 parallel jobs)" in out
    assert "config: results/scan/tiny/config.yaml" in out
    command = "snakemake --cores 2 results/scan/tiny/profile.csv figures/tiny/scan.png --configfile"
    assert command + " results/scan/tiny/config.yaml" in out
    assert list(work["dir"].iterdir()) == []
