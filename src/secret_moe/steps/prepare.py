"""Workflow steps of the data stages: model and tokenizer preparation, tokenisation, extraction, Gaussian control."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from secret_moe import __version__, capture
from secret_moe.corpus import load_lines
from secret_moe.device import resolve_device
from secret_moe.gaussian import fit_moments, write_gaussian_store
from secret_moe.models.layers import check_layers, hidden_size, layer_mlp
from secret_moe.models.loading import (
    load_local_config,
    load_local_model,
    load_local_tokenizer,
    materialise_model,
    materialise_tokenizer,
)
from secret_moe.models.teacher import load_teacher, save_teacher, teacher_from_hf
from secret_moe.provenance import fingerprint_path, provenance, write_json
from secret_moe.store import open_store
from secret_moe.tokenise import corpus_fingerprint, read_token_store, tokenise_lines, write_token_store

log = logging.getLogger(__name__)


def prepare_tokenizer(spec: dict[str, Any], name: str, out_dir: str, layers: list[int]) -> None:
    materialise_tokenizer(spec, name, out_dir, layers)


def prepare_model(spec: dict[str, Any], name: str, out_dir: str, layers: list[int], seed: int) -> None:
    materialise_model(spec, name, out_dir, layers, seed)


def tokenise_corpus(tokenizer_dir: str, outputs: dict[str, str], corpus: dict[str, Any], seed: int) -> None:
    tokenizer = load_local_tokenizer(tokenizer_dir)
    lines = load_lines(corpus, seed)
    for split, out in outputs.items():
        sequences, stats = tokenise_lines(
            lines[split],
            tokenizer,
            min_tokens=corpus["min_tokens"],
            max_length=corpus["max_length"],
            max_lines=corpus["validation_lines"] if split == "validation" else None,
            max_tokens=corpus["max_tokens"].get(split),
            seed=seed,
            split=split,
        )
        attrs = {
            "split": split,
            "corpus_fingerprint": corpus_fingerprint(lines[split]),
            "tokenizer": type(tokenizer).__name__,
            **stats,
            **provenance(corpus),
        }
        write_token_store(out, sequences, attrs)


def export_teacher(model_dir: str, out_dir: str, layer: int, model_spec: dict[str, Any]) -> None:
    model = load_local_model(model_dir, "float32", "cpu")
    teacher = teacher_from_hf(layer_mlp(model, layer), model.config)
    save_teacher(
        teacher,
        out_dir,
        provenance(
            {"model": model_spec, "layer": layer}, {"model": fingerprint_path(Path(model_dir) / "model.safetensors")}
        ),
    )


def store_identity(model_spec: dict[str, Any], layer: int, token_attrs: dict[str, Any]) -> dict[str, Any]:
    """Store attributes that must match between a partial store, the config and later readers."""
    return {
        "model_id": model_spec.get("hf_id", model_spec.get("path")),
        "model_source": model_spec["source"],
        "model_init": model_spec.get("init", "pretrained"),
        "revision": model_spec.get("revision"),
        "layer": layer,
        "corpus_fingerprint": token_attrs["corpus_fingerprint"],
        "tokens": token_attrs["tokens"],
    }


def capture_activations(
    model_dir: str,
    tokenizer_dir: str,
    tokens: str,
    out: str,
    *,
    layer: int,
    model_spec: dict[str, Any],
    settings: dict[str, Any],
    seed: int,
    device: str,
) -> None:
    sequences, token_attrs = read_token_store(tokens)
    sequences = capture.first_tokens(sequences, settings.get("max_tokens", {}).get(token_attrs["split"]))
    config = load_local_config(model_dir)
    check_layers(config, [layer], Path(model_dir).name)
    device = resolve_device(device)
    model = load_local_model(model_dir, model_spec.get("dtype", "float32"), device)
    attrs = {
        **store_identity(model_spec, layer, token_attrs),
        "split": token_attrs["split"],
        "d_model": hidden_size(config),
        "dtype": "float32",
        "compute_dtype": model_spec.get("dtype", "float32"),
        "package_version": __version__,
        "capture_config": settings,
        "seed": seed,
    }
    pad_id, pad_left = _padding(tokenizer_dir)
    tick = time.perf_counter()
    stats = capture.capture_activations(
        model,
        sequences,
        out,
        layer=layer,
        pad_id=pad_id,
        batch_tokens=settings["batch_tokens"],
        window_sequences=settings["window_sequences"],
        chunk_mb=settings["chunk_mb"],
        seed=seed,
        device=device,
        attrs=attrs,
        keep_padding=settings.get("keep_padding", False),
        padding_batch_lines=settings.get("padding_batch_lines"),
        pad_left=pad_left,
    )
    stats["seconds"] = time.perf_counter() - tick
    log.info("capture stats: %s", stats)
    write_json(Path(out) / "capture_stats.json", stats)


def _padding(tokenizer_dir: str) -> tuple[int, bool]:
    """The tokenizer's pad id (0 if it has none) and whether it pads on the left (used only when padded
    positions are kept, as the authors did)."""
    tokenizer = load_local_tokenizer(tokenizer_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return pad_id, tokenizer.padding_side == "left"


def fit_gaussian(store: str, out: str, block_rows: int) -> None:
    group = open_store(store)
    mean, cov, rows = fit_moments(group["x"], block_rows)
    np.savez(out, mean=mean, cov=cov, rows=rows)
    log.info("fitted N(mean, cov) on %d rows: mean input variance %.4f", rows, np.trace(cov) / len(mean))


def sample_gaussian(moments: str, teacher_dir: str, like: str, out: str, *, seed: int, split: str, device: str) -> None:
    fitted = np.load(moments)
    real = open_store(like)
    device = resolve_device(device)
    attrs = {**dict(real.attrs), "data": "gaussian", "split": split, "moments": fingerprint_path(moments)}
    write_gaussian_store(
        out,
        mean=fitted["mean"],
        cov=fitted["cov"],
        teacher=load_teacher(teacher_dir, device),
        rows=real["x"].shape[0],
        chunk_rows=real["x"].chunks[0],
        seed=seed,
        device=device,
        attrs=attrs,
    )
