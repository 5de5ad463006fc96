"""A job that fails on bad input shows the package's message in Snakemake's own output, not only in its log.

The default config's model is a GGUF file whose layer count is only known once its package has written it,
so a layer out of range passes the checks made when Snakemake parses the workflow and fails in the job
`prepare_tokenizer` (about 30 s on a 2-core CPU). The workflow profile `profiles/default/`, which Snakemake
reads by default, makes it print the failed job's log.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from secret_moe.layout import path

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MESSAGE = "models.gemma3-270m.layers: layer 99 is out of range; the model has 18 layers (0..17)"


def test_a_layer_out_of_range_reaches_the_terminal(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["models"]["gemma3-270m"]["layers"] = [99]
    config["padding_controls"] = {}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [
        str(Path(sys.executable).with_name("snakemake")),
        *("-s", str(REPO / "Snakefile"), "--configfile", str(tmp_path / "config.yaml"), "-d", str(tmp_path / "work")),
        *("--cores", "1", path("tokenizer", model="gemma3-270m")),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Error in rule prepare_tokenizer" in output, output[-3000:]  # it failed in the job, not when parsing
    assert MESSAGE in output, output[-3000:]
    assert "workflow specific profile" in output  # the profile was read although none was named
