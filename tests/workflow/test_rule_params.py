"""The params of the distillation rules stay what finished runs were recorded with: Snakemake's params trigger
compares a job's params with those in its metadata, so a param removed or renamed retrains every finished run of a
user's results (a param added does too).  Change these sets only with a rerun in mind, and say so."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# as the runs trained since 2026-12-01 recorded them (rules/distill.smk)
RECORDED = {
    "train_students": {"runs", "distill", "seed", "device", "precision", "checkpoint", "checkpoint_minutes"},
    "collect_run": {"run", "distill", "seed"},
}


def rule_params(smk: Path, rule: str) -> set[str]:
    """The names in a rule's `params:` section, read from its .smk file."""
    body = re.search(rf"^rule {rule}:\n(.*?)(?=^\S|\Z)", smk.read_text(), re.MULTILINE | re.DOTALL).group(1)
    section = re.search(r"^    params:\n((?:        .*\n|\s*\n)*)", body, re.MULTILINE).group(1)
    return set(re.findall(r"^        (\w+)=", section, re.MULTILINE))


@pytest.mark.parametrize("rule", sorted(RECORDED))
def test_the_distillation_rules_keep_the_params_finished_runs_recorded(rule):
    assert rule_params(REPO / "rules" / "distill.smk", rule) == RECORDED[rule]


def test_a_removed_param_is_seen(tmp_path):
    smk = tmp_path / "distill.smk"
    text = (REPO / "rules" / "distill.smk").read_text()
    smk.write_text(re.sub(r"^        precision=.*\n", "", text, flags=re.MULTILINE))
    assert rule_params(smk, "train_students") == RECORDED["train_students"] - {"precision"}
