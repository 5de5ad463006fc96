"""The padding control end to end on tiny random models: capture with padded positions kept (gpt_neox with
a Pythia-style tokenizer, EOS padding on the right; gemma3 with a Gemma-style one, BOS first and padding on
the left), train an MLP and an MoE, and split the validation FVU by row kind."""

from __future__ import annotations

import pytest

from secret_moe.layout import member_dir
from secret_moe.provenance import read_json
from secret_moe.steps.activations import capture_activations
from secret_moe.steps.distill import train_students
from secret_moe.steps.tokens import tokenise_corpus
from secret_moe.testing import save_tiny_model, tiny_corpus_config

LAYER = 1
STUDENTS = ("mlp_h8", "moe_lowrank_r4_m64_s4_k4")


@pytest.fixture(scope="module", params=[("gpt_neox", "pythia", "right"), ("gemma3_text", "gemma", "left")])
def trained(request, tiny_corpus, tmp_path_factory):
    arch, style, side = request.param
    root = tmp_path_factory.mktemp(style)
    model_dir = save_tiny_model(root / "model", arch, seed=0, style=style)
    tokens = {split: str(root / f"{split}_tokens.zarr") for split in ("train", "validation")}
    corpus = tiny_corpus_config(tiny_corpus, train_tokens=2000, validation_tokens=600, validation_lines=40)
    tokenise_corpus(str(model_dir), tokens, corpus, seed=0)
    settings = {
        "batch_tokens": 512,
        "window_sequences": 16,
        "chunk_mb": 1,
        "keep_padding": True,
        "padding_batch_lines": 4,
    }
    stores = {}
    for split, path in tokens.items():
        stores[split] = str(root / f"{split}.zarr")
        capture_activations(
            str(model_dir),
            str(model_dir),
            path,
            stores[split],
            layer=LAYER,
            model_spec={"source": "local", "hf_id": f"local/{style}", "layers": [LAYER]},
            settings=settings,
            seed=0,
            device="cpu",
        )
    runs = [
        {"model": style, "layer": LAYER, "data": "activations", "student": s, "epochs": 2, "lr": 3e-3, "seed": 0}
        for s in STUDENTS
    ]
    distill = {"batch_size": 128, "group_chunks": 2, "in_memory": True}
    bundle = root / "bundle"
    train_students(
        stores["train"], stores["validation"], str(bundle), runs=runs, distill=distill, seed=0, device="cpu", threads=1
    )
    return {"style": style, "side": side, "metrics": [read_json(member_dir(bundle, r) / "metrics.json") for r in runs]}


def test_the_validation_fvu_splits_by_kind_and_recombines(trained):
    for metrics in trained["metrics"]:
        by_kind = metrics["by_kind"]
        expected = {"token", "pad", "special"} if trained["style"] == "gemma" else {"token", "pad"}
        assert set(by_kind) == expected
        assert sum(part["rows"] for part in by_kind.values()) == metrics["val_rows"]
        assert sum(part["variance_share"] * part["fvu"] for part in by_kind.values()) == pytest.approx(
            metrics["best_fvu"], rel=1e-9
        )
        assert sum(part["error_share"] for part in by_kind.values()) == pytest.approx(1.0, rel=1e-12)
        for record in metrics["history"]:
            parts = [by_kind[k]["variance_share"] * record[f"val_fvu_{k}"] for k in by_kind]
            assert sum(parts) == pytest.approx(record["val_fvu"], rel=1e-9)
        assert by_kind["token"]["fvu_own"] > 0
        if trained["side"] == "right":  # right pads attend to their line, so they differ from one another
            assert by_kind["pad"]["fvu_own"] > 0
        if "special" in by_kind:  # every line's BOS at position 0 gives the same row: no variance of its own
            assert by_kind["special"]["fvu_own"] is None


def test_moe_router_usage_is_reported_for_pad_and_token_rows(trained):
    mlp, moe = trained["metrics"]
    assert mlp["router_usage"] is None
    usage = moe["router_usage"]
    assert usage["pad"]["rows"] == moe["by_kind"]["pad"]["rows"]
    assert usage["token"]["rows"] == moe["by_kind"]["token"]["rows"]
    for kind in ("pad", "token", "all"):
        assert 4 <= usage[kind]["distinct_experts"] <= 64
        assert 0 < usage[kind]["top_experts_share"] <= 1
