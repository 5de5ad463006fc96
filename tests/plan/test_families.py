"""The registry of experiment families: each entry's figures have their plotting function and the schema knows
each family's config."""

from __future__ import annotations

from pathlib import Path

import yaml

from secret_moe import figures
from secret_moe.families import CAPTIONS, FAMILIES, LAYER_FIGURES, split

REPO = Path(__file__).resolve().parents[2]


def test_every_figure_of_a_family_has_its_plotting_function_and_a_caption():
    for name, family in FAMILIES.items():
        for figure in family.figures:
            assert callable(getattr(figures, figure.name, None)), f"{name}: secret_moe.figures.{figure.name} is missing"
            assert CAPTIONS[figure.name].endswith(".")
    assert "layer_sweep" not in LAYER_FIGURES  # per model: figures/{model}/layer_sweep


def test_every_family_but_main_has_its_config_in_the_schema():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    experiments = schema["properties"]["experiments"]["properties"]
    assert set(FAMILIES) - {"main"} <= set(experiments)


def test_a_split_that_is_all_shared_is_a_dense_mlp():
    assert split(8, 1.0, "lowrank", 8, 64) == "mlp_h8"
    assert split(8, 0.5, "lowrank", 8, 64) == "moe_lowrank_r8_m64_s4_k4"
    assert split(8, 0.5, "lowrank", 8, 64, width=2) == "moe_lowrank_r8_m64_s4_k2_e2"
