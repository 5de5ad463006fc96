"""Bad configs fail when Snakemake parses the workflow, naming the culprit, before any job is scheduled."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def assert_failed_before_any_job(result: subprocess.CompletedProcess, tmp_path: Path) -> None:
    assert result.returncode != 0, result.output[-3000:]
    assert "Job stats" not in result.output  # no DAG was built, so no job could have been scheduled
    produced = [p for p in (tmp_path / "work").rglob("*") if ".snakemake" not in p.parts]
    assert produced == []


def test_valid_tiny_config_plans_the_expected_jobs(workflow_config, tmp_path, dry_run):
    result = dry_run(workflow_config, tmp_path)
    assert result.returncode == 0, result.output[-3000:]
    counts = {}
    for line in result.output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    expected = {
        # 28 runs (7 students x 2 learning rates x 2 data), one bundle per store: they share seed and epochs
        "train_students": 2,
        "collect_run": 28,
        "capture_activations": 2,
        "sample_gaussian": 2,
        "fit_gaussian": 1,
        # fvu_vs_active, learning_curves, router_comparison, shared_split (no paper point for this model)
        "plot_figure": 4,
        "prepare_model": 1,
        "tokenise_corpus": 1,
        "export_teacher": 1,
    }
    assert {job: counts.get(job) for job in expected} == expected, result.output[-3000:]


@pytest.mark.parametrize(
    ("where", "key"),
    [((), "epochz"), (("distill",), "learning_rate")],
)
def test_unknown_config_key_fails_naming_the_key(workflow_config, tmp_path, where, key, dry_run):
    section = workflow_config
    for name in where:
        section = section[name]
    section[key] = 3
    result = dry_run(workflow_config, tmp_path)
    assert_failed_before_any_job(result, tmp_path)
    assert f"'{key}'" in result.output
    assert "Additional properties are not allowed" in result.output


def test_k_above_m_fails_naming_the_student(workflow_config, tmp_path, dry_run):
    # the only student with k > m (the full-rank variant would be a second one)
    workflow_config["experiments"]["router_rank"].update({"experts": 4, "k": [8], "include_fullrank": False})
    result = dry_run(workflow_config, tmp_path)
    assert_failed_before_any_job(result, tmp_path)
    assert "moe_lowrank_r4_m4_s8_k8" in result.output
    assert "k=8, m=4" in result.output


def test_moe_sizes_all_with_k_above_m_fail_naming_them(workflow_config, tmp_path, dry_run):
    workflow_config["distill"]["moe"].update({"experts": [2], "k": [4, 8]})
    result = dry_run(workflow_config, tmp_path)
    assert_failed_before_any_job(result, tmp_path)
    assert "distill.moe: every MoE size has k > m (k=4 > m=2, k=8 > m=2)" in result.output


def test_missing_corpus_file_fails_naming_the_file(workflow_config, tmp_path, dry_run):
    missing = tmp_path / "no_such_corpus.txt"
    workflow_config["corpus"]["files"]["train"] = str(missing)
    result = dry_run(workflow_config, tmp_path)
    assert_failed_before_any_job(result, tmp_path)
    assert str(missing) in result.output
    assert "CorpusError" in result.output


def test_corpus_file_that_is_not_utf8_fails_naming_the_file(workflow_config, tmp_path, dry_run):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("the caf\u00e9 by the river\n".encode("latin-1"))
    workflow_config["corpus"]["files"]["train"] = str(latin1)
    result = dry_run(workflow_config, tmp_path)
    assert_failed_before_any_job(result, tmp_path)
    assert f"corpus.files.train: file '{latin1}' is not UTF-8 text (byte 0xe9 at offset 7" in result.output


def test_gguf_file_that_is_not_gguf_fails_naming_the_file(workflow_config, tmp_path, dry_run):
    fake = tmp_path / "model.gguf"
    fake.write_text("not a model\n")
    workflow_config["models"]["tiny"].update({"source": "gguf_file", "path": str(fake)})
    result = dry_run(workflow_config, tmp_path)
    assert_failed_before_any_job(result, tmp_path)
    assert f"models.tiny.path: file '{fake}' is not a GGUF file (it starts with b'not ', not b'GGUF')" in result.output


@pytest.mark.parametrize(
    ("student", "planned"), [("moe_lowrank_r8_m64_s4_k4", True), ("moe_bogus_r8_m64_s4_k4", False)]
)
def test_a_student_target_outside_the_name_grammar_matches_no_rule(
    workflow_config, tmp_path, dry_run, student, planned
):
    """The `student` wildcard constraint is the grammar of students/spec.py (an unknown router is no student)."""
    target = f"results/distill/tiny/layer1/activations/{student}/e2_lr0.001_seed0/metrics.json"
    result = dry_run(workflow_config, tmp_path, target=target)
    assert (result.returncode == 0) == planned, result.output[-3000:]
    assert ("collect_run" in result.output and "train_students" in result.output) == planned
    if not planned:
        assert "MissingRuleException" in result.output


def test_a_config_of_an_earlier_version_names_the_renamed_key(workflow_config, tmp_path, dry_run):
    workflow_config["extract"] = workflow_config.pop("capture")
    result = dry_run(workflow_config, tmp_path)
    assert_failed_before_any_job(result, tmp_path)
    assert "config key 'extract' is now called 'capture'" in result.output
