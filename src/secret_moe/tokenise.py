"""Tokenise corpus lines: drop short lines, cut long ones, store token ids as a ragged Zarr array."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm import tqdm

from secret_moe.errors import CorpusError
from secret_moe.provenance import fingerprint_text
from secret_moe.store_check import check_store, seal

log = logging.getLogger(__name__)


def tokenise_lines(
    lines: list[str],
    tokenizer: Any,
    *,
    min_tokens: int,
    max_length: int,
    max_lines: int | None,
    max_tokens: int | None,
    seed: int,
    split: str,
) -> tuple[list[np.ndarray], dict[str, int]]:
    """Token id sequences of the lines with at least `min_tokens` tokens, each cut at `max_length`.

    Lines are visited in a seeded random order so that a token cap takes a fair sample of the corpus.
    """
    order = list(range(len(lines)))
    random.Random(seed).shuffle(order)
    sequences: list[np.ndarray] = []
    total = dropped = 0
    progress = tqdm(order, desc=f"tokenise {split}", unit="line", mininterval=2)
    for index in progress:
        ids = tokenizer(lines[index], add_special_tokens=True)["input_ids"]
        if len(ids) < min_tokens:
            dropped += 1
            continue
        sequences.append(np.asarray(ids[:max_length], dtype=np.int32))
        total += len(sequences[-1])
        if (max_lines and len(sequences) >= max_lines) or (max_tokens and total >= max_tokens):
            break
    if not sequences:
        raise CorpusError(
            f"corpus.min_tokens={min_tokens} leaves no line in the {split} split "
            f"({len(lines)} lines, all shorter); lower corpus.min_tokens or use a longer corpus"
        )
    stats = {"lines_in": len(lines), "lines_kept": len(sequences), "lines_dropped": dropped, "tokens": total}
    log.info("%s: kept %d lines (%d tokens), dropped %d short lines", split, len(sequences), total, dropped)
    return sequences, stats


def corpus_fingerprint(lines: list[str]) -> str:
    return fingerprint_text("\n".join(lines))


def write_token_store(path: str | Path, sequences: list[np.ndarray], attrs: dict[str, Any]) -> None:
    """Ragged storage: all ids back to back in `ids`, sequence boundaries in `offsets`."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    group = zarr.open_group(str(path), mode="w")
    group.create_array("ids", data=np.concatenate(sequences), chunks=(1 << 20,))
    group.create_array("offsets", data=offsets, chunks=(1 << 20,))
    group.attrs.update(attrs)
    seal(path)


def read_token_store(path: str | Path) -> tuple[list[np.ndarray], dict[str, Any]]:
    check_store(path)
    group = zarr.open_group(str(path), mode="r")
    ids = group["ids"][:]
    offsets = group["offsets"][:]
    sequences = [ids[start:stop] for start, stop in zip(offsets[:-1], offsets[1:], strict=False)]
    return sequences, dict(group.attrs)
