"""The layer profile on hand-made tables: one row per layer in the order of profile.COLUMNS, each layer's verdict row
and statistics copied as they are, the budget from the ladder, a layer without a verdict kept as undecided."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from secret_moe.scan.figure import budget_label
from secret_moe.scan.profile import COLUMNS, STATISTICS, profile_table
from secret_moe.steps.scan import profile_layers

MOE = "moe_lowrank_r32_m64_s4_k4"


def verdict_row(model: str, layer: int, student: str = MOE, **values) -> dict:
    row = {
        "model": model,
        "layer": layer,
        "student": student,
        "active_neurons": 8,
        "seeds": 2,
        "advantage_real": 1.5 + layer,
        "real_low": 1.2 + layer,
        "real_high": 1.9 + layer,
        "real_is": "measured",
        "advantage_gaussian": 1.0,
        "gaussian_low": 0.8,
        "gaussian_high": 1.1,
        "gaussian_is": "measured",
        "converged": True,
        "max_fvu_change": 0.01,
        "convergence": "yes: every student within 1.0% (tolerance 3%)",
        "verdict": "supports",
    }
    return row | values


def stats_of(layer: int) -> pd.DataFrame:
    real = {
        "data": "activations",
        "rows": 3000 + layer,
        **{name: 10.0 * layer + i for i, name in enumerate(STATISTICS)},
    }
    twin = {"data": "gaussian", "rows": 3000 + layer, **{name: 0.1 * i for i, name in enumerate(STATISTICS)}}
    twin |= {"special_share": None, "pad_share": None}  # Gaussian samples have no row kinds
    return pd.DataFrame([real, twin])


@pytest.fixture
def tables():
    verdict = pd.DataFrame(
        [
            verdict_row("tiny", 0),
            verdict_row(
                "tiny", 2, real_high=math.inf, real_is="lower bound: the MoE has not converged", converged=False
            ),
            verdict_row("other", 0, verdict="contradicts"),  # another model: left out
        ]
    )
    verdict.loc[1, "verdict"] = "undecided"
    ladder = pd.DataFrame([{"model": "tiny", "layer": layer, "epochs": e} for layer in (0, 2) for e in (1, 2)])
    return verdict, ladder, {layer: stats_of(layer) for layer in (2, 0, 1)}


def test_one_row_per_layer_with_the_verdict_budget_and_statistics(tables):
    verdict, ladder, stats = tables
    profile = profile_table(verdict, ladder, stats, "tiny", epochs=99)
    assert list(profile.columns) == list(COLUMNS)
    assert list(profile.layer) == [0, 1, 2]
    first = profile.iloc[0]
    expected = verdict_row("tiny", 0)
    for key in ("student", "advantage_real", "real_low", "real_high", "gaussian_low", "converged", "verdict"):
        assert first[key] == expected[key], key
    assert profile.iloc[2].real_high == math.inf and not profile.iloc[2].converged
    assert list(profile.verdict) == ["supports", "undecided", "undecided"]
    # the layer without a verdict row keeps its statistics, with no advantage
    assert math.isnan(profile.iloc[1].advantage_real) and not profile.iloc[1].converged
    assert list(profile.epochs) == [2, 99, 2] and list(profile.ladder) == ["1/2", "", "1/2"]
    assert list(profile.rows) == [3000, 3001, 3002]
    for i, layer in enumerate((0, 1, 2)):
        for j, name in enumerate(STATISTICS):
            assert profile.iloc[i][f"{name}_real"] == pytest.approx(10.0 * layer + j)
    assert profile.kurtosis_mean_gaussian.tolist() == [0.0, 0.0, 0.0]
    assert profile.special_share_gaussian.isna().all()


def test_without_a_ladder_the_budget_is_the_configured_epochs(tables):
    verdict, _, stats = tables
    profile = profile_table(verdict, pd.DataFrame(), stats, "tiny", epochs=32)
    assert set(profile.epochs) == {32} and set(profile.ladder) == {""}


def test_several_moe_sizes_give_one_row_each_by_active_neurons(tables):
    verdict, ladder, stats = tables
    bigger = verdict_row("tiny", 0, student="moe_lowrank_r32_m64_s8_k8", active_neurons=16)
    verdict = pd.concat([pd.DataFrame([bigger]), verdict], ignore_index=True)
    profile = profile_table(verdict, ladder, stats, "tiny", epochs=2)
    assert list(profile[profile.layer == 0].active_neurons) == [8, 16]
    assert len(profile) == 4


def test_the_step_reads_the_tables_an_empty_ladder_included(tables, tmp_path):
    verdict, _, stats = tables
    verdict.to_csv(tmp_path / "verdict.csv", index=False)
    pd.DataFrame().to_csv(tmp_path / "ladder.csv", index=False)  # as aggregate_runs writes it without a ladder
    csvs = []
    for layer in (0, 1, 2):
        stats[layer].to_csv(tmp_path / f"layer{layer}.csv", index=False)
        csvs.append(str(tmp_path / f"layer{layer}.csv"))
    out = tmp_path / "profile.csv"
    tables_in = (str(tmp_path / "verdict.csv"), str(tmp_path / "ladder.csv"), csvs)
    profile_layers(*tables_in, model="tiny", layers=[0, 1, 2], epochs=4, out=str(out))
    profile = pd.read_csv(out)
    assert list(profile.layer) == [0, 1, 2] and list(profile.columns) == list(COLUMNS)
    assert profile.real_high.iloc[2] == math.inf and set(profile.epochs) == {4}


def test_the_figure_names_the_budget_its_advantages_were_measured_at(tables):
    verdict, ladder, stats = tables
    profile = profile_table(verdict, ladder, stats, "tiny", epochs=99)
    # layers 0 and 2 trained on the ladder 1/2 (seeds from their verdict rows); layer 1 has no verdict
    assert budget_label(profile) == (
        "budget: 2 epochs (ladder 1/2), 3,000 train rows, 2 seeds; 2 epochs (ladder 1/2), 3,002 train rows, 2 seeds; "
        "99 epochs, 3,001 train rows"
    )
    same = profile.assign(rows=24000)
    assert budget_label(same[same.layer != 1]) == "budget: 2 epochs (ladder 1/2), 24,000 train rows, 2 seeds"
