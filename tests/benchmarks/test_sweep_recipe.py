"""benchmarks/sweep_recipe.py: the rows-per-store lever trains on a sealed copy of a store's first rows."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from secret_moe.store import open_store
from secret_moe.testing import write_mlp_store

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from sweep_recipe import RECIPES, prefix_store  # noqa: E402


def test_a_prefix_store_is_the_first_rows_of_its_source_sealed(tmp_path: Path) -> None:
    source = write_mlp_store(tmp_path / "train.zarr", 300, 8, 64, seed=3, attrs={"layer": 2, "model_id": "tiny"})
    copy = open_store(prefix_store(str(source), tmp_path / "prefix.zarr", 150))  # checks every chunk's CRC
    whole = open_store(source)
    assert copy["x"].shape == (150, 8) and copy["x"].chunks == whole["x"].chunks
    for name in ("x", "y"):
        np.testing.assert_array_equal(copy[name][:], whole[name][:150])
    assert copy.attrs["rows"] == 150 and copy.attrs["layer"] == 2
    with pytest.raises(ValueError, match="301 rows asked for"):
        prefix_store(str(source), tmp_path / "too_long.zarr", 301)


def test_the_rows_levers_match_the_scans_budget_or_the_defaults_steps() -> None:
    default, scan = (yaml.safe_load((REPO / name).read_text()) for name in ("config.yaml", "config/scan.yaml"))
    at_scan_size = RECIPES["r24_data_init_revive_rows24k"]
    assert at_scan_size["rows"] == scan["corpus"]["max_tokens"]["train"]
    assert at_scan_size["epochs"] == scan["distill"]["epochs"]
    default_steps = default["corpus"]["max_tokens"]["train"] * default["distill"]["epochs"]
    for name in ("r96_data_init_revive_rows24k", "r48_data_init_revive_rows50k"):  # as many rows x epochs
        assert RECIPES[name]["rows"] * RECIPES[name]["epochs"] == pytest.approx(default_steps, rel=0.05)
    for name, spec in RECIPES.items():  # rows and epochs are the recipe's, not distill settings
        assert not {"rows", "epochs"} & set(spec.get("distill", {})), name
