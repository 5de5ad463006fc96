"""Bad configs fail when Snakemake parses the workflow, naming the culprit, before any job is scheduled."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import dump_config

from secret_moe.testing import run_snakemake, write_gguf_header, write_hub_cache

REPO = Path(__file__).resolve().parents[2]


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
    ("where", "key", "known"),
    [((), "epochz", "the config: capture, corpus, device"), (("distill",), "learning_rate", "distill: batch_size")],
)
def test_unknown_config_key_fails_naming_the_key(workflow_config, tmp_path, where, key, known, dry_run):
    section = workflow_config
    for name in where:
        section = section[name]
    section[key] = 3
    result = dry_run(workflow_config, tmp_path)
    assert_failed_before_any_job(result, tmp_path)
    assert f"{tmp_path / 'config.yaml'}: {'.'.join([*where, key])}: unknown key (the keys of {known}" in result.output
    assert "Failed validating" not in result.output  # the schema is not printed
    assert len(result.output.splitlines()) < 10, result.output


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["distill"].update(epochs=0), "distill.epochs: 0 is less than the minimum of 1"),
        (
            lambda c: c["distill"].update(learning_rates=[-0.003]),
            "distill.learning_rates[0]: -0.003 is less than or equal to the minimum of 0",
        ),
        (lambda c: c["models"]["tiny"].update(layers=[-1]), "models.tiny.layers[0]: -1 is less than the minimum of 0"),
    ],
)
def test_a_value_the_schema_refuses_is_named_by_its_key_path_first(workflow_config, tmp_path, dry_run, change, message):
    change(workflow_config)
    result = dry_run(workflow_config, tmp_path)
    assert_failed_before_any_job(result, tmp_path)
    assert f"{tmp_path / 'config.yaml'}: {message}" in result.output
    assert "Failed validating" not in result.output


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


def test_a_layer_out_of_range_of_a_gguf_file_fails_before_any_job(workflow_config, tmp_path, dry_run):
    gguf = write_gguf_header(tmp_path / "model.gguf", layers=5, hidden=16)
    workflow_config["models"]["tiny"].update({"source": "gguf_file", "path": str(gguf), "layers": [7]})
    result = dry_run(workflow_config, tmp_path)
    assert_failed_before_any_job(result, tmp_path)
    assert "models.tiny.layers: layer 7 is out of range; the model has 5 layers (0..4)" in result.output


def test_a_layer_out_of_range_of_the_default_gguf_package_fails_before_any_job(tmp_path, dry_run):
    """The default config's model, whose file only its package writes: its metadata gives the layer count (cached
    after the first read), so the refusal comes before any job, not inside prepare_tokenizer."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["padding_controls"]["gemma3-270m-padded"]["layers"] = [18]
    result = dry_run(config, tmp_path)
    assert_failed_before_any_job(result, tmp_path)
    message = "padding_controls.gemma3-270m-padded.layers: layer 18 is out of range; the model has 18 layers (0..17)"
    assert message in result.output


def test_a_gguf_package_that_is_not_installed_fails_before_any_job(workflow_config, tmp_path, dry_run):
    workflow_config["models"]["tiny"].update({"source": "gguf_package", "gguf_package": "no_such_gguf_package"})
    result = dry_run(workflow_config, tmp_path)
    assert_failed_before_any_job(result, tmp_path)
    message = "models.tiny.gguf_package: package 'no_such_gguf_package' is not installed; run the README install"
    assert message in result.output


def run_offline_hub(config: dict, tmp_path: Path, *options: str) -> subprocess.CompletedProcess:
    """Snakemake on `config` with the Hub at a closed local port and an empty local Hugging Face cache but for what
    the test put in tmp_path/hub."""
    configfile = dump_config(tmp_path / "config.yaml", config)
    (tmp_path / "work").mkdir(exist_ok=True)
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "hub")}
    env["HF_HUB_OFFLINE"] = "0"
    return run_snakemake(tmp_path / "work", *options, "figures/all", configfile=configfile, timeout=300, env=env)


def test_an_unreachable_hub_is_refused_in_one_line_before_any_job_runs(workflow_config, tmp_path):
    workflow_config["models"]["tiny"].update({"source": "hub", "hf_id": "secret-moe-tests/nowhere"})
    planned = run_offline_hub(workflow_config, tmp_path, "-n")
    assert planned.returncode == 0, planned.output[-3000:]  # a dry run plans offline
    result = run_offline_hub(workflow_config, tmp_path, "--cores", "1")
    assert result.returncode != 0
    assert (
        "models.tiny.hf_id: the config of 'secret-moe-tests/nowhere' (revision None) could not be fetched from the "
        "Hugging Face Hub (" in result.output
    ), result.output[-3000:]
    assert "Select jobs to execute" not in result.output and "Retrying" not in result.output
    assert [p for p in (tmp_path / "work").rglob("*") if ".snakemake" not in p.parts] == []


def test_a_hub_config_in_the_local_cache_checks_layers_in_a_dry_run(workflow_config, tmp_path):
    write_hub_cache(tmp_path / "hub", "secret-moe-tests/cached", {"num_hidden_layers": 2, "hidden_size": 32})
    workflow_config["models"]["tiny"].update({"source": "hub", "hf_id": "secret-moe-tests/cached", "layers": [2]})
    result = run_offline_hub(workflow_config, tmp_path, "-n")
    assert_failed_before_any_job(result, tmp_path)
    assert "models.tiny.layers: layer 2 is out of range; the model has 2 layers (0..1)" in result.output
