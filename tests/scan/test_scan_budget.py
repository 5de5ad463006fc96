"""Budgets of `secret-moe scan` and the config it writes: the presets and a budget file load, merged over
config.yaml's sections; what a budget may not hold is refused naming --budget; the scan preset plans the runs its
sizing comment counts for Gemma-3-270M's 18 layers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from secret_moe.cli import validated_config
from secret_moe.errors import ScanArgumentError
from secret_moe.plan import distill_runs, ladder_budgets
from secret_moe.scan.budget import check_one_moe, corpus_choice, load_budget, merged, scan_config
from secret_moe.scan.target import Target
from secret_moe.testing import tiny_scan_budget

REPO = Path(__file__).resolve().parents[2]
BASE = yaml.safe_load((REPO / "config.yaml").read_text())
GEMMA = Target("gemma3-270m", {k: v for k, v in BASE["models"]["gemma3-270m"].items() if k != "layers"}, 18, 640, "")


def test_merging_is_deep_and_leaves_both_inputs_alone():
    base, over = {"a": {"b": 1, "c": 2}, "d": [1]}, {"a": {"c": 3}, "d": [2]}
    assert merged(base, over) == {"a": {"b": 1, "c": 3}, "d": [2]}
    assert base == {"a": {"b": 1, "c": 2}, "d": [1]}


def test_the_scan_preset_plans_18_layers_as_its_sizing_says():
    config = scan_config(BASE, load_budget("scan", REPO), {}, GEMMA, list(range(18)))
    resolved = validated_config(config)
    check_one_moe(resolved)
    runs = distill_runs(resolved)
    assert len(runs) == 18 * 2 * 5 * 3  # layers x data x students x seeds: 540, as config/scan.yaml counts
    assert ladder_budgets(resolved) == [6, 12, 24]
    assert resolved["corpus"]["max_tokens"] == {"train": 24000, "validation": 6000}
    assert resolved["corpus"]["source"] == BASE["corpus"]["source"]  # config.yaml's text, the budget's rows
    assert config["capture"]["one_pass"] == ["gemma3-270m"] and "padding_controls" not in config
    assert config["models"] == {"gemma3-270m": {**GEMMA.spec, "layers": list(range(18))}}


def test_the_verdict_preset_takes_the_distillation_and_the_budget_check_of_config_verdict():
    budget = load_budget("verdict", REPO)
    verdict = yaml.safe_load((REPO / "config" / "verdict.yaml").read_text())
    assert set(budget) == {"distill", "experiments", "verdict"}
    assert budget["distill"] == verdict["distill"]
    assert budget["experiments"] == {"budget_check": verdict["experiments"]["budget_check"]}


def test_a_budget_file_of_the_same_shape_loads(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny_scan_budget()))
    assert load_budget(str(tmp_path / "tiny.yaml"), REPO) == tiny_scan_budget()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "--budget: '{file}' is no preset (scan, verdict) and no file"),
        ("- a list", "--budget: '{file}' is no YAML mapping of config sections"),
        ("models: {}", "--budget: '{file}': models is no budget section"),
        ("experiments: {num_experts: {enabled: true}}", "experiments.num_experts: a scan runs the main comparison"),
    ],
)
def test_what_a_budget_may_not_hold_is_refused(tmp_path, content, message):
    file = tmp_path / "budget.yaml"
    if content is not None:
        file.write_text(content)
    with pytest.raises(ScanArgumentError) as error:
        load_budget(str(file), REPO)
    assert message.format(file=file) in str(error.value)


def test_several_moe_sizes_are_refused():
    config = scan_config(BASE, load_budget("scan", REPO), {}, GEMMA, [9])
    config["distill"]["moe"]["k"] = [16, 32]
    with pytest.raises(ScanArgumentError, match="distill.moe gives 2 MoE students"):
        check_one_moe(validated_config(config))


def test_the_corpus_option(tmp_path):
    assert corpus_choice(None) == {} and corpus_choice(["hub"]) == {"source": "hub"}
    train, validation = tmp_path / "train.txt", tmp_path / "validation.txt"
    train.write_text("a line\n")
    validation.write_text("another line\n")
    files = corpus_choice([str(train), str(validation)])
    assert files == {"source": "files", "files": {"train": str(train), "validation": str(validation)}}
    with pytest.raises(ScanArgumentError, match="--corpus: file '.*missing.txt' does not exist"):
        corpus_choice([str(train), str(tmp_path / "missing.txt")])
    with pytest.raises(
        ScanArgumentError, match=r"--corpus: python_docs, hub, or two files \(train, then validation\), not 1 file$"
    ):
        corpus_choice([str(train)])
    with pytest.raises(
        ScanArgumentError, match="--corpus: file 'nope.txt' does not exist \\(and it is neither python_docs nor hub\\)"
    ):
        corpus_choice(["nope.txt"])
    config = scan_config(BASE, {}, files, GEMMA, [9])
    assert config["corpus"]["files"]["text_column"] == BASE["corpus"]["files"]["text_column"]
    assert config["corpus"]["source"] == "files" and config["corpus"]["files"]["train"] == str(train)
