"""The one config entry point (secret_moe.config): a file or a dict, checked in order (renamed keys, the schema and
its defaults, padding controls, the checks beyond the schema), as the Snakefile, the CLI and restore read it."""

from __future__ import annotations

import copy

import pytest
import yaml

from secret_moe import cli, restore
from secret_moe.config import REPO, SCHEMA, load_config
from secret_moe.errors import ConfigError, ScanArgumentError


def test_the_schema_is_the_repositorys():
    assert SCHEMA == REPO / "config" / "schema.yaml" and SCHEMA.is_file()
    assert not hasattr(cli, "SCHEMA") or cli.SCHEMA is SCHEMA


def test_a_config_dict_is_completed_as_a_copy(workflow_config):
    workflow_config["padding_controls"] = {"tiny-padded": {"same_as": "tiny", "batch_lines": 4, "layers": [1]}}
    given = copy.deepcopy(workflow_config)
    config = load_config(workflow_config)
    assert workflow_config == given  # the dict given stays as it is
    assert config["distill"]["schedule"] == {"kind": "cosine", "warmup_epochs": 0, "cooldown_fraction": 0.2, "rungs": 1}
    assert config["models"]["tiny-padded"]["same_as"] == "tiny" and config["models"]["tiny-padded"]["keep_padding"]


def test_a_refusal_names_the_file_and_the_key(workflow_config, tmp_path):
    workflow_config["distill"]["epochs"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(workflow_config))
    with pytest.raises(ConfigError, match=rf"^{path}: distill\.epochs: 0 is less than the minimum of 1"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^mine: distill\.epochs"):
        load_config(workflow_config, source="mine")


def test_a_renamed_key_is_named_before_the_schema_refuses_it(workflow_config):
    workflow_config["extract"] = workflow_config.pop("capture")
    with pytest.raises(ConfigError, match="'extract' is now called 'capture'"):
        load_config(workflow_config)
    with pytest.raises(ScanArgumentError, match="'extract' is now called 'capture'"):  # the CLI reads it the same way
        cli.validated_config(workflow_config)


def test_the_checks_beyond_the_schema_run(workflow_config):
    workflow_config["distill"]["moe"]["k"] = [128]  # k > m = 64 for every size
    with pytest.raises(ConfigError, match="every MoE size has k > m"):
        load_config(workflow_config)


def test_restore_reads_the_config_as_the_snakefile_does():
    config = load_config(REPO / "config.yaml")
    assert "gemma3-270m-padded" in config["models"]  # the padding control, resolved
    assert restore.group_targets(config, "tokens", "gemma3-270m") == [
        "results/tokens/gemma3-270m/train.zarr",
        "results/tokens/gemma3-270m/validation.zarr",
    ]
