"""A config that breaks config/schema.yaml is refused in one line that starts with the config file and the key path,
without the schema (Snakemake's own report printed the failing part of the schema: 177 lines for an unknown key);
a valid config still gets the schema's defaults."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from secret_moe.errors import ConfigError
from secret_moe.schema import config_source, key_path, validate_config

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "config" / "schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())
DISTILL_KEYS = ", ".join(sorted(yaml.safe_load(SCHEMA.read_text())["properties"]["distill"]["properties"]))


def gemma(config: dict) -> dict:
    return config["models"]["gemma3-270m"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["distill"].update(epochs=0), "distill.epochs: 0 is less than the minimum of 1"),
        (
            lambda c: c["distill"].update(learning_rates=[0.001, -0.003]),
            "distill.learning_rates[1]: -0.003 is less than or equal to the minimum of 0",
        ),
        (lambda c: gemma(c).update(layers=[-1]), "models.gemma3-270m.layers[0]: -1 is less than the minimum of 0"),
        (
            lambda c: c["distill"].update(learning_rate=0.003),
            f"distill.learning_rate: unknown key (the keys of distill: {DISTILL_KEYS})",
        ),
        (lambda c: c.update(epochz=3, seeds=[0]), "epochz, seeds: unknown keys (the keys of the config: capture, "),
        (lambda c: c["distill"].update(epochs="many"), "distill.epochs: 'many' is not of type 'integer'"),
        (
            lambda c: gemma(c).update(source="pypi"),
            "models.gemma3-270m.source: 'pypi' is not one of ['hub', 'gguf_package', 'gguf_file', 'local']",
        ),
        (lambda c: gemma(c).pop("layers"), "models.gemma3-270m.layers: missing (a required key of models.gemma3-270m)"),
        (lambda c: c.pop("models"), "models: missing (a required key of the config)"),
    ],
)
def test_a_bad_config_is_refused_in_one_line_naming_the_key_path(change, message):
    config = copy.deepcopy(DEFAULT)
    change(config)
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA, "bad.yaml")
    assert str(error.value).startswith(f"bad.yaml: {message}")
    assert "\n" not in str(error.value) and "schema" not in str(error.value)


def test_a_long_value_is_cut_short():
    config = copy.deepcopy(DEFAULT)
    config["distill"]["seeds"] = {f"seed{i}": i for i in range(200)}
    with pytest.raises(ConfigError) as error:
        validate_config(config, SCHEMA)
    assert str(error.value).startswith("distill.seeds: {'seed0': 0, 'seed1': 1,")
    assert str(error.value).endswith("…") and len(str(error.value)) < 250


def test_a_valid_config_gets_the_schema_defaults():
    config = copy.deepcopy(DEFAULT)
    del config["distill"]["bundle_size"]
    validate_config(config, SCHEMA, "config.yaml")
    assert config["distill"]["bundle_size"] == 64 and config["resources"]["train_students"]["mem_mb"] > 0


def test_key_paths_and_config_sources(tmp_path, monkeypatch):
    assert key_path(["models", "gemma3-270m", "layers", 0]) == "models.gemma3-270m.layers[0]"
    assert key_path([]) == ""
    monkeypatch.chdir(tmp_path)
    assert config_source([]) == "config.yaml"
    assert config_source([tmp_path / "a.yaml", "/elsewhere/b.yaml"]) == "a.yaml, /elsewhere/b.yaml"
