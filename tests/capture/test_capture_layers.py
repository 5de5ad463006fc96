"""One forward pass for several layers (`capture_layers`): each store is the one a capture of that layer alone
writes, byte for byte, beside-files included; the pass stops after the deepest layer asked for; an interrupted
pass whose stores stopped at different rows resumes to the same bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from secret_moe import capture
from secret_moe.capture import capture_batch, capture_layers_batch
from secret_moe.models.layers import decoder_layers
from secret_moe.models.loading import load_local_model
from secret_moe.provenance import read_json
from secret_moe.steps.activations import capture_activations, capture_layers
from secret_moe.steps.tokens import tokenise_corpus
from secret_moe.store import PROGRESS_FILE, chunk_rows_for, partial_path
from secret_moe.testing import save_tiny_model, tiny_corpus_config
from secret_moe.tokenise import read_token_store

LAYERS = [0, 1, 2]  # every layer of the tiny models
# small chunks (82 rows of d = 32) and windows, so that a few hundred tokens span several of each
SETTINGS = {"batch_tokens": 256, "window_sequences": 8, "chunk_mb": 0.01}
SETUPS = {  # name: (architecture, tokenizer style, extra capture settings)
    "plain": ("gpt_neox", "plain", {}),
    # BOS rows, left padding and padded positions kept: every row kind and both padding sides' code paths
    "gemma-padded": ("gemma3_text", "gemma", {"keep_padding": True, "padding_batch_lines": 4}),
}
TIMINGS = ("model_seconds", "write_seconds", "seconds")  # capture_stats.json keys that are wall-clock times


def store_files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", params=sorted(SETUPS))
def captured(request, tiny_corpus, tmp_path_factory):
    """The stores of every layer, once captured layer by layer and once in one pass, by the workflow's steps."""
    arch, style, extra = SETUPS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    model_dir = save_tiny_model(root / "model", arch, seed=0, style=style)
    tokens = str(root / "train_tokens.zarr")
    tokenise_corpus(str(model_dir), {"train": tokens}, tiny_corpus_config(tiny_corpus, train_tokens=600), seed=0)
    common = {
        "model_spec": {"source": "local", "hf_id": f"local/{arch}", "layers": LAYERS},
        "settings": {**SETTINGS, **extra},
        "seed": 0,
        "device": "cpu",
    }
    alone = {layer: str(root / "alone" / f"layer{layer}.zarr") for layer in LAYERS}
    for layer, out in alone.items():
        capture_activations(str(model_dir), str(model_dir), tokens, out, layer=layer, **common)
    together = {layer: str(root / "together" / f"layer{layer}.zarr") for layer in LAYERS}
    capture_layers(str(model_dir), str(model_dir), tokens, together, **common)
    return {"alone": alone, "together": together, "model_dir": model_dir, "tokens": tokens}


def test_each_store_of_one_pass_is_the_store_of_its_layer_alone(captured):
    chunk_rows = chunk_rows_for(32, SETTINGS["chunk_mb"])
    for layer in LAYERS:
        alone, together = Path(captured["alone"][layer]), Path(captured["together"][layer])
        files = store_files(together)
        assert "rows_by_kind.csv" in files and "capture_stats.json" in files and "zarr.json" in files
        stats_alone, stats_together = (
            read_json(alone / "capture_stats.json"),
            read_json(together / "capture_stats.json"),
        )
        # byte for byte, but for the statistics, whose wall-clock times differ from run to run
        del files["capture_stats.json"]
        assert files == {name: data for name, data in store_files(alone).items() if name != "capture_stats.json"}
        assert stats_together.keys() == stats_alone.keys()
        assert {k: v for k, v in stats_together.items() if k not in TIMINGS} == {
            k: v for k, v in stats_alone.items() if k not in TIMINGS
        }
        group = zarr.open_group(str(together), mode="r")
        assert group.attrs["layer"] == layer
        assert group["x"].shape[0] > 3 * chunk_rows  # several chunks: the comparison covers chunk boundaries
    # the layers' stores differ (each holds its own layer) and share their row arrays
    stores = [zarr.open_group(captured["together"][layer], mode="r") for layer in LAYERS]
    assert not np.allclose(stores[0]["x"][:], stores[1]["x"][:])
    for name in ("position", "token_id", "kind"):
        assert all(np.array_equal(stores[0][name][:], store[name][:]) for store in stores[1:])


@pytest.mark.parametrize("arch", ["gpt_neox", "gemma3_text"])
def test_one_pass_stops_after_the_deepest_layer_asked_for(tiny_models, arch):
    model = tiny_models[arch]
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (2, 9), generator=generator)
    mask = torch.ones_like(ids)
    calls = {"deeper": 0, "head": 0}

    def counter(name):
        def hook(*_):
            calls[name] += 1

        return hook

    hooks_before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    handles = [
        decoder_layers(model)[2].register_forward_pre_hook(counter("deeper")),
        model.lm_head.register_forward_pre_hook(counter("head")),
    ]
    try:
        both = capture_layers_batch(model, [0, 1], ids, mask)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"deeper": 0, "head": 0}
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == hooks_before
    for layer in (0, 1):  # the same tensors as a pass for that layer alone
        x, y = capture_batch(model, layer, ids, mask)
        assert torch.equal(both[layer][0], x) and torch.equal(both[layer][1], y)


class Interrupted(Exception):
    """Stands for a kill: raised by a commit, before it is recorded."""


def test_an_interrupted_pass_resumes_each_store_from_its_own_rows(captured, monkeypatch, tmp_path):
    """A pass stopped between two stores' commits of the same chunk leaves them at different rows; the next pass
    starts at the least advanced and gives every store the bytes of an uninterrupted pass."""
    model = load_local_model(captured["model_dir"], "float32", "cpu")
    sequences, _ = read_token_store(captured["tokens"])
    chunk_rows = chunk_rows_for(32, SETTINGS["chunk_mb"])
    kwargs = {
        "pad_id": 0,
        **SETTINGS,
        "seed": 3,
        "device": "cpu",
        "attrs": {layer: {"layer": layer} for layer in LAYERS},
    }
    reference = {layer: tmp_path / "reference" / f"layer{layer}.zarr" for layer in LAYERS}
    capture.capture_layers(model, sequences, reference, **kwargs)

    outs = {layer: tmp_path / "resumed" / f"layer{layer}.zarr" for layer in LAYERS}
    real_commit, commits = capture.commit_rows, []

    def commit(path, rows):
        commits.append(Path(path))
        if len(commits) == 4 * len(LAYERS):  # the 4th chunk, committed by every layer but the last
            raise Interrupted
        real_commit(path, rows)

    monkeypatch.setattr(capture, "commit_rows", commit)
    with pytest.raises(Interrupted):
        capture.capture_layers(model, sequences, outs, **kwargs)
    done = [read_json(partial_path(outs[layer]) / PROGRESS_FILE)["rows"] for layer in LAYERS]
    assert done == [4 * chunk_rows, 4 * chunk_rows, 3 * chunk_rows]

    commits.clear()
    monkeypatch.setattr(
        capture, "commit_rows", lambda path, rows: (commits.append(Path(path)), real_commit(path, rows))
    )
    capture.capture_layers(model, sequences, outs, **kwargs)
    chunks = -(-sum(len(s) for s in sequences) // chunk_rows)
    # each store commits only the chunks it lacked
    assert [commits.count(partial_path(outs[layer])) for layer in LAYERS] == [chunks - 4, chunks - 4, chunks - 3]
    for layer in LAYERS:
        assert not partial_path(outs[layer]).exists()
        assert store_files(outs[layer]) == store_files(reference[layer])
