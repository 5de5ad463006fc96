"""The config checked against config/schema.yaml, refused in one line that names the key path first.

Snakemake's `validate` raises a WorkflowError that embeds jsonschema's whole report (the failing part of the schema
and of the config: 177 lines for an unknown key, and a first line such as `0 is less than the minimum of 1` that
names no key).  `validate_config` checks with jsonschema itself first and raises a ConfigError such as
`config.yaml: distill.epochs: 0 is less than the minimum of 1`; then Snakemake's `validate` fills in the schema's
defaults as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from secret_moe.errors import ConfigError

MAX_MESSAGE = 200  # characters of jsonschema's message kept (it quotes the offending value, which may be a section)


def key_path(parts: Iterable[str | int]) -> str:
    """`distill.learning_rates[0]` for the parts ("distill", "learning_rates", 0)."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _unknown_keys(error: Any) -> str:
    """The message of an `additionalProperties: false` error: the unknown keys by path, then the known keys."""
    known = sorted(error.schema.get("properties", {}))
    unknown = sorted(set(error.instance) - set(known))
    where = key_path(error.absolute_path)
    paths = ", ".join(key_path([*error.absolute_path, key]) for key in unknown)
    plural = "s" if len(unknown) > 1 else ""
    return f"{paths}: unknown key{plural} (the keys of {where or 'the config'}: {', '.join(known)})"


def schema_error(config: dict[str, Any], schema: dict[str, Any]) -> str | None:
    """The most relevant way `config` breaks `schema`, in one line starting with the key path; None if it is valid."""
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    error = best_match(validator_for(schema)(schema).iter_errors(config))
    if error is None:
        return None
    if error.validator == "additionalProperties" and error.schema.get("additionalProperties") is False:
        return _unknown_keys(error)
    if error.validator == "required":
        missing = next(key for key in error.validator_value if key not in error.instance)
        where = key_path(error.absolute_path)
        return f"{key_path([*error.absolute_path, missing])}: missing (a required key of {where or 'the config'})"
    message = " ".join(error.message.split())
    message = message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 1] + "…"
    return f"{key_path(error.absolute_path) or 'config'}: {message}"


def validate_config(config: dict[str, Any], schema_file: Path, source: str | None = None) -> None:
    """Check `config` (read from `source`, named first in the error if given) against the schema, then fill in its
    defaults (in place) as the Snakefile always has; a ConfigError naming the key path where it does not validate."""
    from snakemake.utils import validate

    schema = yaml.safe_load(Path(schema_file).read_text())
    if (message := schema_error(config, schema)) is not None:
        raise ConfigError(message if source is None else f"{source}: {message}")
    validate(config, schema=str(schema_file), set_default=True)


def config_source(configfiles: Iterable[str | Path]) -> str:
    """How a refusal names the config: the files given with --configfile (relative to here where inside), else the
    default config.yaml."""
    here = Path.cwd()
    names = [str(Path(file).relative_to(here) if Path(file).is_relative_to(here) else file) for file in configfiles]
    return ", ".join(names) or "config.yaml"
