"""The one way a config is read: the Snakefile (rules/common.smk), `secret-moe scan` and `secret_moe.restore`.

In this order: a key of an earlier version named with its new name, the schema checked (refused in one line naming
the key) and its defaults filled in, each padding control added to `models`, then the checks beyond the schema.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from secret_moe.errors import ConfigError
from secret_moe.plan import check_config, resolve_variants
from secret_moe.schema import validate_config

REPO = Path(__file__).resolve().parents[2]  # the checkout this package runs from (installed editable)
SCHEMA = REPO / "config" / "schema.yaml"
RENAMED_KEYS = {"extract": "capture"}  # config keys of earlier versions -> their names now


def check_renamed_keys(config: dict[str, Any]) -> None:
    """Name the new key of a renamed one, before the schema refuses it as unknown."""
    for old, new in RENAMED_KEYS.items():
        if old in config:
            raise ConfigError(f"config key {old!r} is now called {new!r} (same settings): rename it in your config")


def prepare_config(config: dict[str, Any], source: str | None = None) -> dict[str, Any]:
    """Check `config` and complete it in place (schema defaults, padding controls as models); returns it.  For a
    config already read, such as Snakemake's `config` with its overrides; `source` names it first in a refusal."""
    check_renamed_keys(config)
    validate_config(config, SCHEMA, source)
    resolve_variants(config)
    check_config(config)
    return config


def load_config(config: str | Path | dict[str, Any] = "config.yaml", *, source: str | None = None) -> dict[str, Any]:
    """A config file (or a copy of a config dict, which stays as it is), checked and completed as the Snakefile
    sees it; a refusal names `source`, by default the file."""
    if isinstance(config, dict):
        return prepare_config(copy.deepcopy(config), source)
    return prepare_config(yaml.safe_load(Path(config).read_text()), str(config) if source is None else source)
