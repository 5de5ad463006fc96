"""What the MODEL of `secret-moe scan MODEL` names, and its layer count and hidden size, read without loading weights.

MODEL is a key of config.yaml's `models`, a folder in Hugging Face format (`source: local`), a GGUF file
(`source: gguf_file`, recognised by its magic bytes) or a Hub id `org/name` (`source: hub`; only its config.json
is fetched).  Every refusal names the argument it refuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secret_moe.errors import ScanArgumentError, SecretMoeError
from secret_moe.models.shape import Shape, model_shape

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


def _shape_of(spec: dict[str, Any], name: str) -> Shape:
    """The layer count and hidden size of a `models` entry, without its weights (models/shape.py: a GGUF file's
    metadata is parsed once and cached; a materialised copy, resources/models/<name>, is read where there is one)."""
    shape = model_shape(spec, name, "MODEL")
    assert shape is not None  # with the network allowed, a Hub model's shape is known or refused
    return shape


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
        shape = _shape_of(spec, name)
    except SecretMoeError as error:  # the message names MODEL
        raise ScanArgumentError(str(error)) from error
    if model not in keys:
        spec["router_rank"] = min(default_rank, shape.hidden)
    return Target(name, spec, shape.layers, shape.hidden, described)


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
