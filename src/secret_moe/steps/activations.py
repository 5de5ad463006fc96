"""Steps of rules/activations.smk: capture one layer's MLP inputs and outputs into a Zarr store
(`capture_activations`), or several layers' into one store each in one forward pass (`capture_layers`)."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

from secret_moe import __version__, capture, rows
from secret_moe.device import resolve_device
from secret_moe.errors import ConfigError
from secret_moe.models.layers import check_layers, hidden_size
from secret_moe.models.loading import (
    load_local_config,
    load_local_model,
    load_local_tokenizer,
)
from secret_moe.provenance import write_json
from secret_moe.store import open_store
from secret_moe.tokenise import read_token_store

log = logging.getLogger(__name__)


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
    """The store of one layer: `capture_layers` with that layer alone."""
    capture_layers(
        model_dir,
        tokenizer_dir,
        tokens,
        {layer: out},
        model_spec=model_spec,
        settings=settings,
        seed=seed,
        device=device,
    )


def capture_layers(
    model_dir: str,
    tokenizer_dir: str,
    tokens: str,
    outs: dict[int, str],
    *,
    model_spec: dict[str, Any],
    settings: dict[str, Any],
    seed: int,
    device: str,
) -> None:
    """The store of each layer of `outs` (layer -> store path), all captured in one forward pass per batch; each
    store, its `capture_stats.json` (the pass's statistics) and `rows_by_kind.csv` as a capture of that layer
    alone writes them."""
    sequences, token_attrs = read_token_store(tokens)
    sequences = capture.first_tokens(sequences, settings.get("max_tokens", {}).get(token_attrs["split"]))
    config = load_local_config(model_dir)
    check_layers(config, list(outs), Path(model_dir).name)
    device = resolve_device(device)
    model = load_local_model(model_dir, model_spec.get("dtype", "float32"), device)
    attrs = {layer: _store_attrs(model_spec, layer, token_attrs, hidden_size(config), settings, seed) for layer in outs}
    pad_id, pad_left, special_ids = _padding(tokenizer_dir)
    tick = time.perf_counter()
    stats = capture.capture_layers(
        model,
        sequences,
        outs,
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
        special_ids=special_ids,
    )
    stats["seconds"] = time.perf_counter() - tick
    log.info("capture stats: %s", stats)
    for out in outs.values():
        write_json(Path(out) / "capture_stats.json", stats)
        write_rows_by_kind(out)


def _store_attrs(
    model_spec: dict[str, Any],
    layer: int,
    token_attrs: dict[str, Any],
    d_model: int,
    settings: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """The attributes of one layer's store (the row provenance attrs are added by `capture`)."""
    return {
        **store_identity(model_spec, layer, token_attrs),
        "split": token_attrs["split"],
        "d_model": d_model,
        "dtype": "float32",
        "compute_dtype": model_spec.get("dtype", "float32"),
        "package_version": __version__,
        "capture_config": settings,
        "seed": seed,
    }


def write_rows_by_kind(store: str) -> None:
    """`rows_by_kind.csv` beside the arrays: per row kind, rows, distinct inputs and share of Var(y)."""
    table = rows.kind_summary(open_store(store))
    with open(Path(store) / "rows_by_kind.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()} for row in table)


def _padding(tokenizer_dir: str) -> tuple[int, bool, list[int]]:
    """The tokenizer's pad id, whether it pads on the left, and its special token ids.

    A tokenizer without a pad token (Pythia's) pads with its EOS token, as the authors' loader did; the
    side is the tokenizer's own (left for Gemma, right for Pythia).  Padded positions reach the store only
    when they are kept (padding controls); elsewhere the attention mask hides them.
    """
    tokenizer = load_local_tokenizer(tokenizer_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad_id is None:
        raise ConfigError(f"tokenizer {tokenizer_dir!r} has neither a pad nor an EOS token to pad batches with")
    return pad_id, tokenizer.padding_side == "left", sorted(set(tokenizer.all_special_ids))
