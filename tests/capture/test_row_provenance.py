"""Row provenance of activation stores: every row's position, token id and kind, on tiny random models with
the two padding sides (gpt_neox with a Pythia-style tokenizer: no pad token, EOS pads on the right; gemma3
with a Gemma-style tokenizer: BOS first, pads on the left)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from secret_moe.capture import capture_batch, plan_padded_batches, plan_windows
from secret_moe.errors import StoreMismatchError
from secret_moe.models.loading import load_local_model
from secret_moe.rows import PAD, ROW_KINDS, SPECIAL, TOKEN, read_kinds
from secret_moe.steps.activations import capture_activations
from secret_moe.steps.gaussian import fit_gaussian, sample_gaussian
from secret_moe.steps.models import export_teacher
from secret_moe.steps.tokens import tokenise_corpus
from secret_moe.store import create_store
from secret_moe.testing import save_tiny_model, tiny_corpus_config
from secret_moe.tokenise import read_token_store

LAYER = 1
WINDOW = 16
BATCH_LINES = 4
SETUPS = {  # name: (architecture, tokenizer style, pad id, padding side)
    "pythia-like": ("gpt_neox", "pythia", 0, "right"),
    "gemma-like": ("gemma3_text", "gemma", 0, "left"),
}


@pytest.fixture(scope="module", params=sorted(SETUPS))
def setup(request, tiny_corpus, tmp_path_factory):
    """A tiny model of the setup, its tokens, and its train store with and without padded positions."""
    arch, style, pad_id, side = SETUPS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    model_dir = save_tiny_model(root / "model", arch, seed=0, style=style)
    tokens = {"train": str(root / "train_tokens.zarr")}
    corpus = tiny_corpus_config(tiny_corpus, train_tokens=1500)
    tokenise_corpus(str(model_dir), tokens, corpus, seed=0)
    stores, paths = {}, {}
    for keep_padding in (False, True):
        out = root / f"{'padded' if keep_padding else 'tokens'}.zarr"
        settings = {"batch_tokens": 512, "window_sequences": WINDOW, "chunk_mb": 1}
        if keep_padding:
            settings = {**settings, "keep_padding": True, "padding_batch_lines": BATCH_LINES}
        capture_activations(
            str(model_dir),
            str(model_dir),
            tokens["train"],
            str(out),
            layer=LAYER,
            model_spec={"source": "local", "hf_id": f"local/{request.param}", "layers": [LAYER]},
            settings=settings,
            seed=0,
            device="cpu",
        )
        stores[keep_padding], paths[keep_padding] = zarr.open_group(str(out), mode="r"), str(out)
    sequences, _ = read_token_store(tokens["train"])
    return {
        "name": request.param,
        "model_dir": model_dir,
        "model": load_local_model(model_dir, "float32", "cpu"),
        "sequences": sequences,
        "stores": stores,
        "paths": paths,
        "pad_id": pad_id,
        "side": side,
        "style": style,
    }


def rows_of(group) -> dict[str, np.ndarray]:
    return {name: group[name][:] for name in ("position", "token_id", "kind")}


def line_rows(sequences: list[np.ndarray]) -> Counter:
    """(token id, position) of every token of every line."""
    return Counter((int(t), p) for s in sequences for p, t in enumerate(s))


def test_attrs_record_the_padding_and_the_kind_names(setup):
    for group in setup["stores"].values():
        attrs = dict(group.attrs)
        assert attrs["rows"] == "positions"
        assert attrs["row_kinds"] == {str(code): name for code, name in enumerate(ROW_KINDS)}
        assert attrs["row_kinds"] == {"0": "token", "1": "special", "2": "pad"}
        assert attrs["pad_id"] == setup["pad_id"] and attrs["padding_side"] == setup["side"]
        assert attrs["row_arrays"] == ["position", "token_id", "kind"]
        for name, dtype in (("position", "int32"), ("token_id", "int32"), ("kind", "uint8")):
            assert group[name].dtype == np.dtype(dtype)
            assert group[name].shape == (group["x"].shape[0],) and group[name].chunks[0] == group["x"].chunks[0]


def test_a_store_of_tokens_holds_every_line_position_once_and_no_pad(setup):
    rows = rows_of(setup["stores"][False])
    assert not (rows["kind"] == PAD).any()
    assert Counter(zip(rows["token_id"].tolist(), rows["position"].tolist(), strict=True)) == line_rows(
        setup["sequences"]
    )
    bos = rows["kind"] == SPECIAL
    if setup["style"] == "gemma":  # one BOS per line, at its start
        assert bos.sum() == len(setup["sequences"])
        assert (rows["token_id"][bos] == 2).all() and (rows["position"][bos] == 0).all()
    else:  # Pythia's tokenizer adds no BOS
        assert not bos.any()
    assert ((rows["kind"] == TOKEN) == ~bos).all()


def expected_pad_positions(sequences: list[np.ndarray], side: str) -> Counter:
    """The positions of the pads the authors' batches add: after each line (right) or before it (left)."""
    lengths = np.array([len(s) for s in sequences])
    positions = []
    for window in plan_windows(lengths, WINDOW, seed=0):
        for batch in plan_padded_batches(window, BATCH_LINES):
            width = lengths[batch].max()
            for length in lengths[batch]:
                positions.extend(range(length, width) if side == "right" else range(length - width, 0))
    return Counter(positions)


def test_a_padded_store_marks_its_pads_on_the_tokenizers_side(setup):
    rows = rows_of(setup["stores"][True])
    pad = rows["kind"] == PAD
    assert pad.any() and (rows["token_id"][pad] == setup["pad_id"]).all()
    assert Counter(rows["position"][pad].tolist()) == expected_pad_positions(setup["sequences"], setup["side"])
    if setup["side"] == "left":
        assert (rows["position"][pad] < 0).all()
    else:
        assert (rows["position"][pad] >= 8).all()  # after lines of at least corpus.min_tokens tokens
    real = ~pad  # the real tokens are exactly those of the store without padding
    assert Counter(zip(rows["token_id"][real].tolist(), rows["position"][real].tolist(), strict=True)) == line_rows(
        setup["sequences"]
    )


@pytest.mark.parametrize("keep_padding", [False, True])
def test_each_token_row_is_the_activation_of_that_token_at_that_position(setup, keep_padding):
    """Row by row, x of a real token equals the direct capture of its line at its position, and the stored
    token id and position are that line position's (rows that equal in x share them too)."""
    direct_x, direct_token, direct_position = [], [], []
    for ids in setup["sequences"]:
        ids_BT = torch.from_numpy(ids.astype(np.int64))[None]
        x, _ = capture_batch(setup["model"], LAYER, ids_BT, torch.ones_like(ids_BT))
        direct_x.append(x[0].numpy())
        direct_token.extend(ids.tolist())
        direct_position.extend(range(len(ids)))
    direct_x = torch.from_numpy(np.concatenate(direct_x)).double()
    group = setup["stores"][keep_padding]
    rows = rows_of(group)
    real = rows["kind"] != PAD
    stored_x = torch.from_numpy(group["x"][:][real]).double()
    nearest = torch.cdist(stored_x, direct_x).min(dim=1)
    assert nearest.values.max() < 1e-3
    nearest_token = np.array(direct_token)[nearest.indices.numpy()]
    nearest_position = np.array(direct_position)[nearest.indices.numpy()]
    assert (nearest_token == rows["token_id"][real]).all()
    assert (nearest_position == rows["position"][real]).all()


def test_gaussian_store_says_its_rows_are_samples(setup, tmp_path):
    store = str(tmp_path / "gaussian.zarr")
    real = setup["paths"][True]
    export_teacher(str(setup["model_dir"]), str(tmp_path / "teacher"), LAYER, {"source": "local"})
    fit_gaussian(real, str(tmp_path / "moments.npz"), block_rows=4096)
    sample_gaussian(
        str(tmp_path / "moments.npz"), str(tmp_path / "teacher"), real, store, seed=0, split="train", device="cpu"
    )
    group = zarr.open_group(store, mode="r")
    assert group.attrs["rows"] == "samples" and "row_kinds" not in group.attrs
    assert not {"position", "token_id", "kind"} & set(group.array_keys())
    assert read_kinds(group, store) is None


def test_an_activation_store_without_row_arrays_names_itself_and_the_rebuild(tmp_path):
    old = tmp_path / "layer1" / "validation.zarr"
    group = create_store(old, 10, 4, 5, {"capture_config": {"batch_tokens": 512}, "layer": 1})
    with pytest.raises(StoreMismatchError, match="no row provenance") as error:
        read_kinds(group, str(old))
    assert str(old) in str(error.value) and "rerun snakemake" in str(error.value)
    assert read_kinds(create_store(tmp_path / "hand_made.zarr", 10, 4, 5, {}), "hand_made") is None


def test_padding_is_the_tokenizers_own_and_eos_where_it_has_no_pad_token(tmp_path):
    from transformers import PreTrainedTokenizerFast

    from secret_moe.errors import ConfigError
    from secret_moe.models.loading import load_local_tokenizer
    from secret_moe.steps.activations import _padding
    from secret_moe.testing import tiny_tokenizer

    for style, left in (("pythia", False), ("gemma", True), ("plain", False)):
        folder = tmp_path / style
        tiny_tokenizer(style).save_pretrained(folder)
        tokenizer = load_local_tokenizer(folder)
        pad_id, pad_left, special_ids = _padding(str(folder))
        assert pad_id == (tokenizer.eos_token_id if style == "pythia" else tokenizer.pad_token_id) == 0
        assert (style == "pythia") == (tokenizer.pad_token_id is None)
        assert pad_left is left and special_ids == [0, 1, 2]
    bare = PreTrainedTokenizerFast(tokenizer_object=tiny_tokenizer()._tokenizer)
    bare.save_pretrained(tmp_path / "bare")
    with pytest.raises(ConfigError, match="neither a pad nor an EOS token"):
        _padding(str(tmp_path / "bare"))


def test_rows_by_kind_counts_the_kinds_their_distinct_inputs_and_their_share_of_var_y(setup):
    """The capture step's rows_by_kind.csv, recomputed here with numpy from the store's arrays."""
    path = setup["paths"][True]
    table = pd.read_csv(f"{path}/rows_by_kind.csv").set_index("kind")
    group = setup["stores"][True]
    x, y, kind = group["x"][:], group["y"][:].astype(np.float64), group["kind"][:]
    spread = ((y - y.mean(0)) ** 2).sum(1)
    assert table.loc["all", "rows"] == len(x) and table.loc["all", "variance_share"] == pytest.approx(1)
    assert table.loc["all", "y_variance"] == pytest.approx(y.var(0).mean(), rel=1e-4)
    for code, name in enumerate(ROW_KINDS):
        mine = kind == code
        if not mine.any():
            assert name not in table.index
            continue
        _, counts = np.unique(x[mine], axis=0, return_counts=True)
        assert table.loc[name, "rows"] == mine.sum()
        assert table.loc[name, "distinct_x"] == len(counts) and table.loc[name, "largest_group"] == counts.max()
        assert table.loc[name, "variance_share"] == pytest.approx(spread[mine].sum() / spread.sum(), rel=1e-5)
        assert table.loc[name, "y_variance"] == pytest.approx(y[mine].var(0).mean(), rel=1e-4)
        assert table.loc[name, "median_y_norm"] == pytest.approx(np.median(np.linalg.norm(y[mine], axis=1)), rel=1e-5)
    assert table.drop("all").variance_share.sum() == pytest.approx(1, rel=1e-5)
    assert table.loc["pad", "rows"] > 0  # the padded store has pads
