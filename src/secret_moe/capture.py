"""Capture the MLP inputs x and outputs y of one or several layers: one batch (`capture_layers_batch`, forward
hooks on the layers' MLPs, the forward pass stopped right after the deepest one), or every non-padding token of
a corpus streamed into one Zarr store per layer (`capture_layers`).  One layer is the one-layer case of the same
code (`capture_batch`, `capture_activations`), so a store written in a pass over several layers holds the same
bytes as one written alone.

Order of work, fixed by the seed so an interrupted run resumes to identical bytes: sequences are
shuffled and cut into windows; inside a window they are sorted by length and packed into batches of
at most `batch_tokens` padded tokens (little padding); the window's rows are shuffled and appended.
None of it depends on the layer, so every layer of a pass gets its rows in the same order.
Memory holds one window plus one chunk per layer, whatever the corpus size.  Each row's position, token id and
kind (`rows.py`) are stored beside x and y, in the same order.

`keep_padding` reproduces the authors' loader instead (their public code, activation_loader.py): batches
of `padding_batch_lines` sequences in random order, padded on the tokenizer's side, and *every* position
recorded, padding included.  Only for comparing with the published numbers: see docs/padding.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import zarr
from torch import nn
from tqdm import tqdm

from secret_moe.models.layers import hidden_size, layer_mlp
from secret_moe.rows import ROW_ARRAYS, batch_rows, provenance_attrs
from secret_moe.store import chunk_rows_for, commit_rows, finish_store, open_or_create, partial_path

log = logging.getLogger(__name__)


class Padding(NamedTuple):
    """How batches are padded: the id fed at padded positions, the side, and the ids counted as special."""

    pad_id: int
    left: bool  # pads come before the line (Gemma's tokenizer) rather than after it (Pythia's)
    special_ids: list[int]


class _StopForward(Exception):
    """Raised by the hook once the deepest MLP needed has run: later layers are never computed."""


@torch.no_grad()
def capture_layers_batch(
    model: nn.Module, layers: list[int], input_ids_BT: torch.Tensor, attention_mask_BT: torch.Tensor
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """(x, y) = (input, output) of each listed layer's MLP for every position, each (B, T, d); no layer deeper
    than the deepest listed one runs."""
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    deepest = max(layers)

    def hook_of(layer: int) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if layer == deepest:  # the pass ends here: nothing can touch these tensors
                captured[layer] = (args[0], output)
                raise _StopForward
            # copies: the layers after this one in the same pass must not be able to change them in place
            captured[layer] = (args[0].clone(), output.clone())

        return hook

    handles = []
    try:
        for layer in sorted(set(layers)):
            handles.append(layer_mlp(model, layer).register_forward_hook(hook_of(layer)))
        model(input_ids=input_ids_BT, attention_mask=attention_mask_BT, use_cache=False)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = sorted(set(layers) - set(captured))
    if missing:
        raise RuntimeError(f"the MLP of layer {missing[0]} never ran during the forward pass")
    return captured


def capture_batch(
    model: nn.Module, layer: int, input_ids_BT: torch.Tensor, attention_mask_BT: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y) = (input, output) of layer `layer`'s MLP for every position, each (B, T, d)."""
    return capture_layers_batch(model, [layer], input_ids_BT, attention_mask_BT)[layer]


def first_tokens(sequences: list[np.ndarray], max_tokens: int | None) -> list[np.ndarray]:
    """The leading sequences up to the one that brings the total to `max_tokens` (all when None); token
    stores hold their lines in a seeded random order, so this is a fair sample."""
    if max_tokens is None:
        return sequences
    ends = np.cumsum([len(s) for s in sequences])
    return sequences[: int(np.searchsorted(ends, max_tokens)) + 1]


def plan_windows(lengths: np.ndarray, window_sequences: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(len(lengths))
    return [order[i : i + window_sequences] for i in range(0, len(order), window_sequences)]


def plan_batches(window: np.ndarray, lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Greedy batches of similar-length sequences whose padded size stays under `batch_tokens`."""
    ordered = window[np.argsort(-lengths[window], kind="stable")]
    batches, current = [], []
    for index in ordered:
        # sorted by decreasing length, so the first sequence of a batch sets its padded width
        width = lengths[current[0]] if current else lengths[index]
        if current and (len(current) + 1) * width > batch_tokens:
            batches.append(np.array(current))
            current = []
        current.append(index)
    if current:
        batches.append(np.array(current))
    return batches


def plan_padded_batches(window: np.ndarray, batch_lines: int) -> list[np.ndarray]:
    """The authors' batches: consecutive groups of `batch_lines` sequences of the (shuffled) window."""
    return [window[i : i + batch_lines] for i in range(0, len(window), batch_lines)]


def padded_rows(batches: list[np.ndarray], lengths: np.ndarray) -> int:
    """Rows a window writes when every position of its padded batches is kept."""
    return int(sum(len(b) * lengths[b].max() for b in batches))


def _block_names(layers: list[int]) -> list[tuple[str, int | None]]:
    """What each array of a block holds: (name, layer) for x and y of every layer, then (name, None) for the row
    arrays (`rows.ROW_ARRAYS`), which every layer's store holds alike."""
    return [(name, layer) for layer in layers for name in ("x", "y")] + [(name, None) for name in ROW_ARRAYS]


def _window_rows(
    model: torch.nn.Module,
    layers: list[int],
    sequences: list[np.ndarray],
    batches: list[np.ndarray],
    padding: Padding,
    device: str,
    rng: np.random.Generator,
    stats: dict[str, float],
    keep_padding: bool = False,
) -> tuple[np.ndarray, ...]:
    """The window's rows, shuffled (one permutation for every layer), in `_block_names(layers)` order."""
    names = _block_names(layers)
    parts: dict[tuple[str, int | None], list[np.ndarray]] = {name: [] for name in names}
    for batch in batches:
        width = max(len(sequences[i]) for i in batch)
        ids_BT = torch.full((len(batch), width), padding.pad_id, dtype=torch.long)
        mask_BT = torch.zeros((len(batch), width), dtype=torch.long)
        for row, index in enumerate(batch):
            length = len(sequences[index])
            span = slice(width - length, width) if padding.left else slice(0, length)
            ids_BT[row, span] = torch.from_numpy(sequences[index])
            mask_BT[row, span] = 1
        captured = capture_layers_batch(model, layers, ids_BT.to(device), mask_BT.to(device))
        keep_BT = torch.ones_like(mask_BT, dtype=torch.bool) if keep_padding else mask_BT.bool()
        keep_on_device_BT = keep_BT.to(device)
        for layer, (x_BTD, y_BTD) in captured.items():
            parts[("x", layer)].append(x_BTD[keep_on_device_BT].float().cpu().numpy())  # (rows, d)
            parts[("y", layer)].append(y_BTD[keep_on_device_BT].float().cpu().numpy())
        for name, values_BT in batch_rows(ids_BT, mask_BT, padding.special_ids, padding.left).items():
            parts[(name, None)].append(values_BT[keep_BT].numpy())
        stats["padded_tokens"] += ids_BT.numel()
    perm = rng.permutation(sum(len(part) for part in parts[names[0]]))
    # one array at a time, its parts dropped once joined: the window is held once, not three times
    return tuple(np.concatenate(parts.pop(name))[perm] for name in names)


def _chunks_of_windows(
    rows_iter: Iterator[tuple[np.ndarray, ...]], chunk_rows: int, skip: int
) -> Iterator[tuple[np.ndarray, ...]]:
    """Regroup a stream of row blocks (tuples of aligned arrays) into whole chunks, dropping the first `skip`
    rows.  One chunk is copied at a time: a block is cut into views, and the rows left at its end are copied, so
    that the block is freed before the next one is made (memory: one window, not two)."""
    pending: list[tuple[np.ndarray, ...]] = []  # pieces of the next chunk, fewer than chunk_rows rows in all
    held = 0
    for arrays in rows_iter:
        if skip:
            cut = min(skip, len(arrays[0]))
            arrays, skip = tuple(a[cut:] for a in arrays), skip - cut
        start, rows = 0, len(arrays[0])
        while held + rows - start >= chunk_rows:
            stop = start + chunk_rows - held
            head = tuple(a[start:stop] for a in arrays)
            yield tuple(np.concatenate(column) for column in zip(*pending, head, strict=True))
            del head  # no view of the block outlives it
            pending, held, start = [], 0, stop
        if start < rows:
            pending.append(tuple(a[start:].copy() for a in arrays))
            held += rows - start
        del arrays
    if held:
        yield tuple(np.concatenate(column) for column in zip(*pending, strict=True))


def capture_layers(
    model: torch.nn.Module,
    sequences: list[np.ndarray],
    out_paths: dict[int, str | Path],
    *,
    pad_id: int,
    batch_tokens: int,
    window_sequences: int,
    chunk_mb: float,
    seed: int,
    device: str,
    attrs: dict[int, dict[str, Any]],
    keep_padding: bool = False,
    padding_batch_lines: int | None = None,
    pad_left: bool = False,
    special_ids: list[int] | None = None,
) -> dict[str, float]:
    """Write (or resume) the store of each layer at `out_paths[layer]` (its attributes `attrs[layer]`) in one
    forward pass per batch; returns timing and padding statistics of the pass.

    Besides x and y, every row's position, token id and kind are stored (`rows.py`); `special_ids` are the
    tokenizer's special tokens (kind "special"), and the pad id, side and special ids go into the attrs.  Each
    store resumes from its own committed rows: the pass starts at the least advanced one, and a chunk is written
    only to the stores that have not committed it yet."""
    if keep_padding and not padding_batch_lines:
        raise ValueError("keep_padding needs padding_batch_lines (the padding control's batch_lines)")
    layers = sorted(out_paths)
    lengths = np.array([len(s) for s in sequences])
    d_model = hidden_size(model.config)
    chunk_rows = chunk_rows_for(d_model, chunk_mb)
    windows = plan_windows(lengths, window_sequences, seed)
    plans, starts = _plan_rows(windows, lengths, batch_tokens, padding_batch_lines if keep_padding else None)
    padding = Padding(pad_id, pad_left, sorted(special_ids or []))
    provenance = provenance_attrs(pad_id, "left" if pad_left else "right", padding.special_ids)
    stores = {
        layer: _open_store(out_paths[layer], {**attrs[layer], **provenance}, int(starts[-1]), d_model, chunk_rows)
        for layer in layers
    }
    resume = min(done for _, _, done in stores.values())
    first = int(np.searchsorted(starts, resume, side="right") - 1)

    stats = {"padded_tokens": 0.0, "model_seconds": 0.0, "write_seconds": 0.0}
    blocks = _window_blocks(
        model, layers, sequences, plans, padding, device, seed, stats, keep_padding, range(first, len(windows))
    )
    chunks = _chunks_of_windows(blocks, chunk_rows, skip=resume - int(starts[first]))
    _write_chunks(chunks, stores, _block_names(layers), resume, stats)
    for layer in layers:
        finish_store(stores[layer][0], out_paths[layer])
    processed = int(sum(lengths[windows[w]].sum() for w in range(first, len(windows))))
    stats["tokens"] = float(processed)
    stats["padding_fraction"] = 1 - processed / stats["padded_tokens"] if stats["padded_tokens"] else 0.0
    stats["rows"] = float(starts[-1] - starts[first])
    return stats


def _plan_rows(
    windows: list[np.ndarray], lengths: np.ndarray, batch_tokens: int, padding_batch_lines: int | None
) -> tuple[list[list[np.ndarray]], np.ndarray]:
    """The batches of every window and the first row of every window in the stores (one more entry: the total);
    with `padding_batch_lines`, padded batches of that many lines whose every position is a row."""
    if padding_batch_lines:
        plans = [plan_padded_batches(w, padding_batch_lines) for w in windows]
        window_rows = [padded_rows(b, lengths) for b in plans]
    else:
        plans = [plan_batches(w, lengths, batch_tokens) for w in windows]
        window_rows = [int(lengths[w].sum()) for w in windows]
    return plans, np.concatenate([[0], np.cumsum(window_rows)]).astype(np.int64)


def _open_store(
    out_path: str | Path, attrs: dict[str, Any], rows: int, d_model: int, chunk_rows: int
) -> tuple[Path, zarr.Group, int]:
    """(partial path, group, rows already committed) of one layer's store, created or resumed."""
    partial = partial_path(out_path)
    group, done = open_or_create(partial, rows, d_model, chunk_rows, attrs, attrs, ROW_ARRAYS)
    if done:
        log.info("resuming %s at row %d of %d", partial, done, rows)
    return partial, group, done


def _window_blocks(
    model: torch.nn.Module,
    layers: list[int],
    sequences: list[np.ndarray],
    plans: list[list[np.ndarray]],
    padding: Padding,
    device: str,
    seed: int,
    stats: dict[str, float],
    keep_padding: bool,
    todo: range,
) -> Iterator[tuple[np.ndarray, ...]]:
    """The rows of the windows `todo`, one block per window, made only when asked for (the model's time into
    `stats`); each window's random draws come from (seed, window), so a resumed pass draws the same."""
    description = f"capture layer{'s' if len(layers) > 1 else ''} {','.join(map(str, layers))}"
    for w in tqdm(todo, desc=description, unit="window"):
        tick = time.perf_counter()
        rng = np.random.default_rng([seed, w])
        block = _window_rows(model, layers, sequences, plans[w], padding, device, rng, stats, keep_padding)
        stats["model_seconds"] += time.perf_counter() - tick
        yield block
        del block  # before the next window is made


def _write_chunks(
    chunks: Iterator[tuple[np.ndarray, ...]],
    stores: dict[int, tuple[Path, zarr.Group, int]],
    names: list[tuple[str, int | None]],
    row: int,
    stats: dict[str, float],
) -> None:
    """Write the chunks from store row `row` on, each to the stores that have not committed it yet, committing
    after each (the time into `stats`)."""
    for arrays in chunks:
        tick = time.perf_counter()
        behind = [layer for layer, (_, _, done) in stores.items() if row >= done]  # committed chunks: never again
        for (name, owner), values in zip(names, arrays, strict=True):
            for layer in behind:
                if owner in (None, layer):  # the row arrays go to every store, x and y to their layer's
                    stores[layer][1][name][row : row + len(values)] = values
        row += len(arrays[0])
        for layer in behind:
            commit_rows(stores[layer][0], row)
        stats["write_seconds"] += time.perf_counter() - tick


def capture_activations(
    model: torch.nn.Module,
    sequences: list[np.ndarray],
    out_path: str | Path,
    *,
    layer: int,
    attrs: dict[str, Any],
    **settings: Any,
) -> dict[str, float]:
    """Write (or resume) the store of one layer at `out_path`: `capture_layers` with that layer alone (`settings`:
    its keyword arguments from `pad_id` on)."""
    return capture_layers(model, sequences, {layer: out_path}, attrs={layer: attrs}, **settings)
