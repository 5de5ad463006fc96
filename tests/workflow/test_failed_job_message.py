"""A job that fails on bad input shows the package's message in Snakemake's own output, not only in its log.

What the config alone cannot tell is found in a job: here a `corpus.min_tokens` that leaves no line, known only once
the corpus is tokenised (rule tokenise_corpus). The workflow profile `profiles/default/`, which Snakemake reads by
default, makes it print the failed job's log. (A layer out of range is no such input any more: it is refused before
any job, tests/plan/test_snakemake_validation.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from secret_moe.layout import path
from secret_moe.testing import run_snakemake

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def test_a_corpus_error_found_in_a_job_reaches_the_terminal(workflow_config, tmp_path):
    workflow_config["corpus"].update(min_tokens=200, max_length=512)  # the tiny corpus's lines have 5-60 words
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(workflow_config, sort_keys=False))
    target = path("tokens", model="tiny", split="train")
    result = run_snakemake(
        tmp_path / "work", "--cores", "1", target, configfile=tmp_path / "config.yaml", timeout=600, cwd=tmp_path
    )
    output = result.output
    assert result.returncode != 0, output[-3000:]
    assert "Error in rule tokenise_corpus" in output, output[-3000:]  # it failed in the job, not when parsing
    assert "corpus.min_tokens=200 leaves no line in the train split" in output, output[-3000:]
    assert "workflow specific profile" in output  # the profile was read although none was named
