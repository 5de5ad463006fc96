"""Each experiment family's jobs, as Snakemake plans them (dry run) from a tiny config with every family on."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import snakemake_dry_run

from secret_moe.families import LAYER_FIGURES
from secret_moe.testing import TINY_FAMILIES, every_family, tiny_config

REPO = Path(__file__).resolve().parents[2]

# Worked out by hand from secret_moe.testing.every_family (router_rank of the tiny model: 8; s = k unless stated):
# the families of tiny_config (TINY_FAMILIES), the router comparison with its product-key router, and the rest
EXPECTED = {
    "main": set(TINY_FAMILIES["main"]),
    "shared_split": set(TINY_FAMILIES["shared_split"]),
    "router_rank": {*TINY_FAMILIES["router_rank"], "moe_product_key_r8_m64_s4_k4"},
    # 8 active neurons, half shared: 4 experts of width 1, or 2 of width 2
    "expert_width": {"moe_lowrank_r8_m64_s4_k4", "moe_lowrank_r8_m64_s4_k2_e2"},
    "num_experts": {"moe_lowrank_r8_m16_s2_k2", "moe_lowrank_r8_m64_s2_k2", "moe_product_key_r8_m256_s2_k2"},
}
SWEEP_LAYER_STUDENTS = {"mlp_h4", "moe_lowrank_r8_m64_s2_k2"}


def all_families(config: dict) -> dict:
    config = copy.deepcopy(config)
    config["models"]["tiny"]["layers"] = [1]
    config["models"]["tiny-random"] = {**config["models"]["tiny"], "init": "random"}
    config["padding_controls"] = {"tiny-padded": {"same_as": "tiny", "batch_lines": 4, "layers": [1]}}
    config["distill"]["learning_rates"] = [0.003]
    config["experiments"] = every_family()
    return config


def planned_outputs(output: str) -> set[str]:
    files = set()
    for line in output.splitlines():
        if line.strip().startswith("output:"):
            files.update(f.strip() for f in line.split(":", 1)[1].split(","))
    return files


@pytest.fixture(scope="module")
def planned(tiny_model_dir, tiny_corpus, tmp_path_factory):
    config = all_families(tiny_config(tiny_model_dir, copy.deepcopy(tiny_corpus)))
    result = snakemake_dry_run(config, tmp_path_factory.mktemp("families"))
    assert result.returncode == 0, result.output[-3000:]
    return planned_outputs(result.output)


def students_planned(planned: set[str], model: str, layer: int, data: str) -> set[str]:
    prefix = f"results/distill/{model}/layer{layer}/{data}/"
    return {f[len(prefix) :].split("/")[0] for f in planned if f.startswith(prefix) and f.endswith("metrics.json")}


@pytest.mark.parametrize("data", ["activations", "gaussian"])
def test_every_family_runs_exactly_its_students(planned, data):
    every = set().union(*EXPECTED.values())
    assert students_planned(planned, "tiny", 1, data) == every | SWEEP_LAYER_STUDENTS
    assert students_planned(planned, "tiny", 0, data) == SWEEP_LAYER_STUDENTS  # sweep-only layer
    # the controls (random weights; padded positions kept) run the main comparison
    assert students_planned(planned, "tiny-random", 1, data) == EXPECTED["main"]
    assert students_planned(planned, "tiny-padded", 1, data) == EXPECTED["main"]


def test_the_padded_variant_reuses_its_base_models_tokens_and_weights(planned):
    assert "resources/models/tiny" in planned and "resources/models/tiny-random" in planned
    assert not any(
        f.startswith(("resources/models/tiny-padded", "resources/tokenizers/tiny-padded", "results/tokens/tiny-padded"))
        for f in planned
    )
    assert "results/activations/tiny-padded/layer1/train.zarr" in planned


def test_every_family_has_its_figure(planned):
    for figure in LAYER_FIGURES:
        if figure != "paper_comparison":  # the published numbers do not cover the tiny model
            assert f"figures/tiny/layer1/{figure}.png" in planned, figure
    assert "figures/tiny/layer1/paper_comparison.png" not in planned
    assert "figures/tiny/layer_sweep.png" in planned
    assert "figures/tiny-random/control.png" in planned
    assert "figures/tiny-padded/control.png" in planned
    assert "figures/tiny-padded/layer1/what_fvu_measures.png" in planned  # padding controls only
    assert not any(f.endswith("what_fvu_measures.png") and "tiny-padded" not in f for f in planned)
    assert "figures/tiny/layer0/fvu_vs_active.png" not in planned  # sweep-only layers: in the sweep figure


def test_the_paper_config_plans_its_whole_dag_offline(tmp_path):
    """config/paper.yaml (3 models from the Hub, a random-weight control, a padding control of each model, every
    family): the whole DAG is listed without touching the network (the Hub is unreachable here)."""
    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    result = snakemake_dry_run(config, tmp_path)
    assert result.returncode == 0, result.output[-3000:]
    planned = planned_outputs(result.output)
    for model in ("pythia-70m", "gemma3-270m", "pythia-410m"):
        assert f"resources/models/{model}" in planned
    assert "figures/gemma3-270m/layer9/paper_comparison.png" in planned
    for figure in ("shared_split", "router_comparison", "expert_width", "num_experts"):
        assert f"figures/pythia-70m/layer3/{figure}.png" in planned
    assert {
        "figures/gemma3-270m/layer_sweep.png",
        "figures/pythia-70m-random/control.png",
        "figures/gemma3-270m-padded/control.png",
        "figures/pythia-70m-padded/control.png",  # the authors' padded D_act of every teacher
        "figures/pythia-410m-padded/control.png",
        "figures/gemma3-270m-padded/layer9/what_fvu_measures.png",
    } <= planned
    runs = [f for f in planned if f.startswith("results/distill/") and f.endswith("metrics.json")]
    assert len(runs) > 2000
    assert any("moe_product_key_r128_m1000000_s128_k128" in f for f in runs)


@pytest.mark.parametrize("name", ["config.yaml", "config/extended.yaml"])
def test_the_default_and_extended_configs_plan_their_dag_offline(tmp_path, name):
    """The default (the verdict's comparison, its seeds, the budget check) and the extended config (the
    ablations at CPU size) both plan a complete DAG, each with its own families."""
    config = yaml.safe_load((REPO / name).read_text())
    result = snakemake_dry_run(config, tmp_path)
    assert result.returncode == 0, result.output[-3000:]
    planned = planned_outputs(result.output)
    runs = {f for f in planned if f.startswith("results/distill/") and f.endswith("metrics.json")}
    assert {"figures/verdict.png", "figures/gemma3-270m-padded/control.png"} <= planned
    if name == "config.yaml":
        # 2 teachers' D_act x 2 data x 5 students x 1 learning rate x the seeds; the budget check reads the
        # ladder's last two rungs of these runs, so it adds none
        assert config["distill"]["seeds"] == [0, 1, 2, 3, 4]
        assert len(runs) == 2 * 2 * 5 * 1 * 5
        assert any("/moe_lowrank_r128_m1024_s32_k32/e24_lr0.003_seed0/" in f for f in runs)
        assert not any("/e12_" in f or "/e6_" in f for f in runs)
        assert "figures/gemma3-270m/layer9/shared_split.png" not in planned
    else:
        for figure in ("shared_split", "router_comparison"):
            assert f"figures/gemma3-270m/layer9/{figure}.png" in planned
        assert "figures/gemma3-270m/layer_sweep.png" in planned
        assert not any("_e12_" in f or "/e12_" in f for f in runs)  # no budget check
