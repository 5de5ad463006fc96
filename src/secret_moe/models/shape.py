"""A model's layer count and hidden size, read without its weights, so that layers out of range and models that
cannot be read are refused before any job runs.

Where the shape comes from, for each source of config `models.<name>.source`:
- any source: its materialised copy (`resources/models/<name>/config.json`, from an earlier run), if there is one;
- `local`: the folder's config.json;
- `gguf_file`: the file's metadata (models/gguf.py), read as a stream up to the shape's keys: a few kilobytes of
  a 250 MB file, 0.2 ms, at every `snakemake` (no cache would be faster);
- `gguf_package`: the package must be installed (else a one-line refusal); the one .gguf file it ships, or else the
  file it writes to a temporary folder (250 MB, ~2 s), has its metadata read once, then cached in this user's
  private cache (secret_moe.cache) by the package's location, size and modification time;
- `hub`: config.json from the local Hugging Face cache; else, where `network` allows, from the Hub with one request
  of at most HUB_TIMEOUT_S seconds and no retries (with HF_HUB_OFFLINE set, the local cache only), refused in one
  line where it cannot be fetched.  Without `network` the answer is None (unknown): a dry run plans offline.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from secret_moe.cache import read_json, update_json
from secret_moe.errors import ConfigError, ModelSourceError
from secret_moe.layout import path
from secret_moe.models.gguf import gguf_shape, shipped_gguf
from secret_moe.models.layers import hidden_size, num_layers

SHAPE_CACHE = "model-shapes.json"
HUB_TIMEOUT_S = 10
# the config key each source reads its model from, named in its refusals
SOURCE_FIELD = {"hub": "hf_id", "gguf_package": "gguf_package", "gguf_file": "path", "local": "path"}
OFFLINE_HINT = "offline, use a downloaded copy of the model (its folder, or a .gguf file)"


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int


def _shape(config: Any, where: str) -> Shape:
    try:
        return Shape(num_layers(config), hidden_size(config))
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from error


def _config_file(file: Path, where: str) -> Shape:
    raw = json.loads(file.read_text())
    return _shape(SimpleNamespace(**raw.get("text_config", raw)), where)


def _folder(folder: Path, where: str) -> Shape:
    if not (folder / "config.json").is_file():
        raise ModelSourceError(f"{where}: folder {str(folder)!r} has no config.json (not a Hugging Face model folder)")
    return _config_file(folder / "config.json", where)


def _cached(key: str, read: Any) -> Shape:
    """The shape cached under `key`, else `read()`'s, then cached."""
    if isinstance(entry := read_json(SHAPE_CACHE).get(key), list) and len(entry) == 2:
        return Shape(*entry)
    shape = read()
    update_json(SHAPE_CACHE, {key: [shape.layers, shape.hidden]})
    return shape


def _gguf_package(package: str, where: str) -> Shape:
    try:
        found = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        found = None
    if found is None or found.origin is None:
        raise ModelSourceError(f"{where}: package {package!r} is not installed; run the README install")
    origin = Path(found.origin).resolve()  # one key whichever path the package was found through
    status = origin.stat()

    def read() -> Shape:
        if (shipped := shipped_gguf(origin)) is not None:
            return _shape(gguf_shape(shipped, where), where)
        with tempfile.TemporaryDirectory() as tmp:  # the package writes the file; only its metadata is read
            written = importlib.import_module(package).assemble(Path(tmp) / "model.gguf")
            return _shape(gguf_shape(written, where), where)

    return _cached(f"gguf_package {package} {origin} {status.st_size} {status.st_mtime_ns}", read)


def hub_config_file(hf_id: str, revision: str | None, where: str, network: bool = True) -> Path | None:
    """config.json of a Hub model: from the local Hugging Face cache, else fetched (where `network` allows and
    HF_HUB_OFFLINE is not set) after one quick request; None without `network`; one-line refusals otherwise."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(hf_id, "config.json", revision=revision)
    except ValueError as error:  # HFValidationError: not a Hub id
        raise ModelSourceError(f"{where}: {hf_id!r} is no Hub id ({error})") from error
    if isinstance(cached, str):
        return Path(cached)
    if not network:
        return None
    what = f"{where}: the config of {hf_id!r} (revision {revision})"
    if constants.HF_HUB_OFFLINE:
        raise ModelSourceError(
            f"{what} is not in the local Hugging Face cache, and HF_HUB_OFFLINE is set; {OFFLINE_HINT}"
        )
    try:  # one request, no retries: an unreachable Hub is refused in seconds, not after a minute of retries
        get_hf_file_metadata(hf_hub_url(hf_id, "config.json", revision=revision), timeout=HUB_TIMEOUT_S)
        return Path(hf_hub_download(hf_id, "config.json", revision=revision))
    except Exception as error:  # the Hub raises many types (network, HTTP, gated, not found); all mean "cannot fetch"
        reason = " ".join(str(error).split())[:200]
        raise ModelSourceError(
            f"{what} could not be fetched from the Hugging Face Hub ({type(error).__name__}: {reason}); {OFFLINE_HINT}"
        ) from error


def model_shape(spec: dict[str, Any], name: str, where: str | None = None, network: bool = True) -> Shape | None:
    """The shape of model `name` (its `models` entry `spec`), or None where only the Hub could tell and `network` is
    off; refusals name `where` (default: the entry's key its source reads, e.g. `models.<name>.path`)."""
    source = spec["source"]
    where = where or f"models.{name}.{SOURCE_FIELD[source]}"
    copy = Path(path("model", model=name)) / "config.json"
    if source != "local" and copy.is_file():
        return _config_file(copy, where)
    if source == "local":
        return _folder(Path(spec["path"]), where)
    if source == "gguf_file":
        return _shape(gguf_shape(spec["path"], where), where)
    if source == "gguf_package":
        return _gguf_package(spec["gguf_package"], where)
    file = hub_config_file(spec["hf_id"], spec.get("revision"), where, network)
    return None if file is None else _config_file(file, where)
