"""capture.one_pass on the real Snakefile: a model's missing stores come from one capture_layers job per split, and
a finished store is never recomputed when the config grows, nor when one_pass is turned off, but is when a setting
that decides its content changes (Snakemake takes it as capture_activations's, with that rule's params)."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import zarr

from secret_moe.layout import SPLITS
from secret_moe.testing import run_snakemake, save_tiny_model, tiny_config, write_config, write_tiny_corpus

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def stores(layers: list[int]) -> list[str]:
    return [f"results/activations/tiny/layer{layer}/{split}.zarr" for layer in layers for split in SPLITS]


def snakemake(project: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    write_config(project / "config.yaml", config)
    return run_snakemake(project / "work", "--cores", "1", *args, configfile=project / "config.yaml", timeout=900)


def job_counts(output: str) -> dict[str, int]:
    """Jobs per rule in Snakemake's job-stats table (empty when there is nothing to do)."""
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", output, re.MULTILINE)}
    counts.pop("total", None)
    return counts


def planned_outputs(output: str) -> set[str]:
    """The outputs of the jobs a dry run lists."""
    return {path for line in re.findall(r"^    output: (.*)$", output, re.MULTILINE) for path in line.split(", ")}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The stores of layers 0 and 1 of the tiny model (3 layers), made with capture.one_pass."""
    root = tmp_path_factory.mktemp("one_pass")
    corpus = write_tiny_corpus(root, {"train": 120, "validation": 40}, seed=0)
    config = tiny_config(save_tiny_model(root / "model", "gpt_neox"), corpus, experiments={})
    config["models"]["tiny"]["layers"] = [0, 1]
    config["capture"]["one_pass"] = ["tiny"]
    (root / "work").mkdir()
    result = snakemake(root, config, *stores([0, 1]))
    assert result.returncode == 0, result.output[-4000:]
    return root, config, job_counts(result.output)


def test_the_missing_stores_come_from_one_pass_per_split(project):
    root, _, jobs = project
    assert jobs == {"prepare_tokenizer": 1, "tokenise_corpus": 1, "prepare_model": 1, "capture_layers": 2}
    for store in stores([0, 1]):
        group = zarr.open_group(str(root / "work" / store), mode="r")
        assert group["x"].shape[0] > 0 and (root / "work" / store / "rows_by_kind.csv").is_file()
        assert "one_pass" not in group.attrs["capture_config"]  # a scheduling key: no part of the store


def test_a_finished_store_is_never_recomputed_but_reruns_when_its_settings_change(project):
    root, config, _ = project
    grown = copy.deepcopy(config)
    grown["models"]["tiny"]["layers"] = [0, 1, 2]
    plan = snakemake(root, grown, "-n", *stores([0, 1, 2]))
    assert plan.returncode == 0, plan.output[-4000:]
    # the new layer alone, by the per-layer rule (one missing layer is no pass to share); layers 0 and 1 stay
    assert job_counts(plan.output) == {"capture_activations": 2}, plan.output[-4000:]
    assert planned_outputs(plan.output) == set(stores([2]))

    off = copy.deepcopy(config)
    off["capture"]["one_pass"] = []
    plan = snakemake(root, off, "-n", *stores([0, 1]))
    assert plan.returncode == 0 and job_counts(plan.output) == {}, plan.output[-4000:]

    changed = copy.deepcopy(config)
    changed["capture"]["batch_tokens"] = 256  # decides the batches, hence the rows' order: the stores are stale
    plan = snakemake(root, changed, "-n", *stores([0, 1]))
    assert plan.returncode == 0, plan.output[-4000:]
    assert job_counts(plan.output) == {"capture_activations": 4}, plan.output[-4000:]
    assert "Params have changed since last execution" in plan.output
