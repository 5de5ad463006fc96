"""What the MODEL of `secret-moe scan MODEL` names, and its layer count and hidden size, read without loading weights.

MODEL is a key of config.yaml's `models`, a folder in Hugging Face format (`source: local`), a GGUF file
(`source: gguf_file`, recognised by its magic bytes) or a Hub id `org/name` (`source: hub`; only its config.json
is fetched).  Every refusal names the argument it refuses.
"""

from __future__ import annotations

import importlib
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from secret_moe.errors import ConfigError, ScanArgumentError, SecretMoeError
from secret_moe.layout import path
from secret_moe.models.gguf import gguf_shape
from secret_moe.models.layers import hidden_size, num_layers

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # org/name: two parts, not a path that starts with / . or ~


@dataclass(frozen=True)
class Target:
    """The model a scan runs: its key in the written config, its `models` entry (without layers), its shape."""

    name: str
    spec: dict[str, Any]
    layers: int
    hidden: int
    described: str  # for the plan the command prints


def result_name(text: str) -> str:
    """A model key for result paths and the `model` wildcard: letters, digits, `-` and `_` only."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "model"


def _folder_config(folder: Path) -> SimpleNamespace:
    file = folder / "config.json"
    if not file.is_file():
        raise ScanArgumentError(f"MODEL: folder {str(folder)!r} has no config.json (not a Hugging Face model folder)")
    raw = json.loads(file.read_text())
    return SimpleNamespace(**raw.get("text_config", raw))


def _hub_config(hf_id: str, revision: str | None) -> Any:
    from transformers import AutoConfig  # config.json only: no weights

    try:
        return AutoConfig.from_pretrained(hf_id, revision=revision)
    except (OSError, ValueError) as error:
        raise ScanArgumentError(
            f"MODEL: {hf_id!r} is no file or folder here, and its config could not be fetched from the Hugging Face "
            f"Hub ({error}); offline, pass a downloaded folder or a .gguf file"
        ) from error


def _shape_of(spec: dict[str, Any], key: str, name: str) -> Any:
    """The config (layer count, hidden size) of a `models` entry, without its weights; for a source that is slow to
    read (a package's GGUF file is written out first, a Hub config downloaded), its materialised copy's
    (resources/models/<name>, from an earlier run) if there is one."""
    source, copy = spec["source"], Path(path("model", model=name))
    if source in ("gguf_package", "hub") and (copy / "config.json").is_file():
        return _folder_config(copy)
    if source == "local":
        return _folder_config(Path(spec["path"]))
    if source == "gguf_file":
        return gguf_shape(spec["path"], key)
    if source == "gguf_package":  # the package writes the file; only its metadata is read
        package = importlib.import_module(spec["gguf_package"])
        with tempfile.TemporaryDirectory() as tmp:
            return gguf_shape(package.assemble(Path(tmp) / "model.gguf"), key)
    return _hub_config(spec["hf_id"], spec.get("revision"))


def _spec_of(model: str, keys: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    if model in keys:
        spec = {key: value for key, value in keys[model].items() if key != "layers"}
        return model, spec, f"config.yaml's model {model!r} ({spec['source']})"
    path = Path(model).expanduser()
    if path.is_dir():
        return result_name(path.resolve().name), {"source": "local", "path": str(path.resolve())}, f"folder {model}"
    if path.is_file() or path.suffix == ".gguf":
        spec = {"source": "gguf_file", "path": str(path.resolve())}
        return result_name(path.stem), spec, f"GGUF file {model}"
    if HUB_ID.fullmatch(model):
        return result_name(model.split("/")[1]), {"source": "hub", "hf_id": model, "revision": None}, f"Hub {model}"
    raise ScanArgumentError(
        f"MODEL: {model!r} is no file or folder, no key of config.yaml's models ({', '.join(keys)}) and no Hub id "
        "org/name"
    )


def resolve(model: str, keys: dict[str, Any], default_rank: int) -> Target:
    """The Target that MODEL names (`keys`: config.yaml's `models`); a model of its own gets the router rank
    `default_rank` (the schema's), at most its hidden size (a low-rank router of rank d is a full-rank one)."""
    name, spec, described = _spec_of(model, keys)
    try:
        shape = _shape_of(spec, "MODEL", name)
        layers, hidden = num_layers(shape), hidden_size(shape)
    except ConfigError as error:
        raise ScanArgumentError(f"MODEL: {model!r}: {error}") from error
    except SecretMoeError as error:  # a missing or foreign GGUF file: the message already names MODEL
        raise ScanArgumentError(str(error)) from error
    if model not in keys:
        spec["router_rank"] = min(default_rank, hidden)
    return Target(name, spec, layers, hidden, described)


def check_requested_layers(target: Target, layers: list[int] | None) -> list[int]:
    """The layers to scan: every layer of the model, or the requested ones (sorted, each once) if they exist."""
    if layers is None:
        return list(range(target.layers))
    wrong = [layer for layer in layers if not 0 <= layer < target.layers]
    if wrong:
        raise ScanArgumentError(
            f"--layers: layer {wrong[0]} is out of range: {target.name} has {target.layers} layers "
            f"(0..{target.layers - 1})"
        )
    return sorted(set(layers))
