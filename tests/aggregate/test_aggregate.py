"""The results table: per point, min over learning rates of the (seed-mean) min over epochs, as in the paper."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pandas as pd
import pytest

from secret_moe.aggregate import (
    advantage_per_seed,
    best_over_lr,
    mlp_width_to_match,
    moe_advantage,
    runs_table,
    student_label,
)
from secret_moe.errors import SecretMoeError
from secret_moe.testing import families_for, metric


def test_hand_made_point_picks_min_over_lr_of_min_over_epochs():
    metrics = [
        metric("tiny", 1, "activations", "mlp_h8", 1e-3, 0, [0.9, 0.5, 0.6]),  # best 0.5, final 0.6
        metric("tiny", 1, "activations", "mlp_h8", 3e-3, 0, [0.8, 0.55, 0.52]),  # best 0.52, final 0.52 (best final)
        metric("tiny", 1, "activations", "mlp_h8", 1e-2, 0, [0.7, 0.45, 0.9]),  # best 0.45: the winner
    ]
    best = best_over_lr(runs_table(metrics, families_for(metrics)), epochs=10)
    assert len(best) == 1
    row = best.iloc[0]
    assert row.best_fvu == pytest.approx(0.45)
    assert row.best_lr == pytest.approx(1e-2)
    assert row.final_fvu == pytest.approx(0.9)  # the final FVU of the chosen learning rate, not selected on
    assert row.active_neurons == 8 and row.kind == "mlp" and row.families == "main"


def test_random_grid_matches_explicit_loops():
    rng = np.random.default_rng(0)
    students = ["mlp_h4", "mlp_h16", "moe_lowrank_r8_m64_s4_k4", "moe_fullrank_m64_s4_k4"]
    points = list(product(["a", "b"], [1, 3], ["activations", "gaussian"], students))
    lrs, seeds = [1e-4, 3e-4, 1e-3], [0, 1]
    metrics = [
        metric(*point, lr, seed, rng.uniform(0.05, 1.0, size=5).tolist())
        for point in points
        for lr in lrs
        for seed in seeds
    ]
    rng.shuffle(metrics)
    runs = runs_table(metrics, families_for(metrics))
    assert len(runs) == len(points) * len(lrs) * len(seeds)
    best = best_over_lr(runs, epochs=10)
    assert len(best) == len(points)
    assert best_over_lr(runs, epochs=20).empty  # no run at that budget
    for point in points:
        per_seed = {}  # seed -> (best FVU over learning rates, the learning rate reaching it)
        for seed in seeds:
            by_lr = {
                m["lr"]: min(h["val_fvu"] for h in m["history"])
                for m in metrics
                if (m["model"], m["layer"], m["data"], m["student"]) == point and m["seed"] == seed
            }
            lr = min(by_lr, key=by_lr.get)
            per_seed[seed] = (by_lr[lr], lr)
        fvus = [fvu for fvu, _ in per_seed.values()]
        chosen = sorted(lr for _, lr in per_seed.values())
        row = best[
            (best.model == point[0]) & (best.layer == point[1]) & (best.data == point[2]) & (best.student == point[3])
        ]
        assert len(row) == 1
        assert row.best_fvu.item() == pytest.approx(np.mean(fvus))
        assert row.fvu_std.item() == pytest.approx(np.std(fvus, ddof=1))
        assert (row.fvu_min.item(), row.fvu_max.item()) == (pytest.approx(min(fvus)), pytest.approx(max(fvus)))
        assert row.best_lr.item() == chosen[0]  # two seeds: the smaller of their rates on a tie
        assert row.seeds.item() == 2


def test_runs_table_columns_and_families():
    metrics = [metric("tiny", 1, "gaussian", "moe_lowrank_r8_m64_s0_k8", 1e-3, 0, [0.5, 0.4])]
    families = {("tiny", 1, "moe_lowrank_r8_m64_s0_k8"): ["shared_split", "router_rank"]}
    runs = runs_table(metrics, families)
    row = runs.iloc[0]
    assert row.families == "shared_split;router_rank"
    assert (row.kind, row.router, row["rank"], row.experts, row.shared, row.k) == ("moe", "lowrank", 8, 64, 0, 8)
    assert row.best_epoch == 2 and row.final_fvu == 0.4
    # a student no family lists gets an empty membership, never another layer's
    assert runs_table(metrics, {("tiny", 2, "moe_lowrank_r8_m64_s0_k8"): ["main"]}).iloc[0].families == ""


@pytest.mark.parametrize("where", ["history", "best"])
def test_a_nan_run_is_an_error_naming_the_run(where):
    fvus = [0.5, math.nan, 0.4] if where == "history" else [0.5, 0.4]
    bad = metric("tiny", 1, "gaussian", "mlp_h16", 0.003, 1, fvus)
    if where == "best":
        bad["best_fvu"] = math.nan
    good = metric("tiny", 1, "gaussian", "mlp_h16", 0.001, 1, [0.5, 0.4])
    with pytest.raises(SecretMoeError) as error:
        runs_table([good, bad], families_for([good, bad]))
    message = str(error.value)
    assert "tiny/1/gaussian/mlp_h16/10/0.003/1" in message
    assert "metrics.json" in message
    if where == "history":
        assert "[2]" in message  # the bad epoch


def mlp_curve(widths, fvus, model="tiny", layer=1, data="activations", extra=()):
    rows = [
        {
            "model": model,
            "layer": layer,
            "data": data,
            "kind": "mlp",
            "active_neurons": w,
            "best_fvu": f,
            "families": "main",
            "student": f"mlp_h{w}",
        }
        for w, f in zip(widths, fvus, strict=False)
    ]
    return pd.DataFrame(rows + list(extra))


def test_mlp_width_to_match_on_a_power_law_is_exact():
    widths = [8, 16, 32, 64, 128]
    best = mlp_curve(widths, [2 * w**-0.5 for w in widths])
    for width in (8, 11, 24, 50, 128):
        assert mlp_width_to_match(best, 2 * width**-0.5, "tiny", 1, "activations") == pytest.approx(width)


def test_mlp_width_to_match_interpolates_log_log_between_neighbours():
    best = mlp_curve([32, 8, 16], [0.3, 0.8, 0.4])  # unsorted rows on purpose
    t = (math.log(0.35) - math.log(0.4)) / (math.log(0.3) - math.log(0.4))
    expected = math.exp(math.log(16) + t * (math.log(32) - math.log(16)))
    assert mlp_width_to_match(best, 0.35, "tiny", 1, "activations") == pytest.approx(expected)
    assert 16 < expected < 32


def test_mlp_width_to_match_is_nan_outside_the_curve_or_without_one():
    best = mlp_curve([8, 16, 32], [0.8, 0.4, 0.3])
    assert math.isnan(mlp_width_to_match(best, 0.9, "tiny", 1, "activations"))  # worse than the narrowest
    assert math.isnan(mlp_width_to_match(best, 0.1, "tiny", 1, "activations"))  # better than the widest
    assert math.isnan(mlp_width_to_match(best, 0.5, "tiny", 1, "gaussian"))  # no curve for that data
    assert math.isnan(mlp_width_to_match(mlp_curve([8], [0.5]), 0.5, "tiny", 1, "activations"))


def test_mlp_width_to_match_uses_only_the_requested_point():
    other = mlp_curve([8, 16, 32], [0.9, 0.85, 0.8], layer=2)
    best = pd.concat([mlp_curve([8, 16, 32], [0.8, 0.4, 0.2]), other], ignore_index=True)
    assert mlp_width_to_match(best, 0.4, "tiny", 1, "activations") == pytest.approx(16)
    assert mlp_width_to_match(best, 0.85, "tiny", 2, "activations") == pytest.approx(16)


def test_moe_advantage_is_matching_width_over_active_neurons():
    widths = [8, 16, 32, 64]
    moe = {
        "model": "tiny",
        "layer": 1,
        "data": "activations",
        "kind": "moe",
        "active_neurons": 8,
        "best_fvu": 2 * 24**-0.5,
        "families": "main",
        "student": "moe_lowrank_r8_m64_s4_k4",
    }
    ablation = {**moe, "families": "shared_split", "student": "moe_lowrank_r8_m64_s0_k8"}
    best = mlp_curve(widths, [2 * w**-0.5 for w in widths], extra=[moe, ablation]).assign(seed=0)
    per_seed = advantage_per_seed(best)
    assert len(per_seed) == 1  # only main-comparison MoE points
    row = per_seed.iloc[0]
    assert row.matching_mlp_width == pytest.approx(24)
    assert row.advantage == pytest.approx(3)
    # a second seed whose MoE matches the width-12 MLP of its own curve: geometric mean sqrt(4.5) of the two
    seed1 = best.assign(seed=1)
    seed1.loc[seed1.kind == "moe", "best_fvu"] = 2 * 12**-0.5
    per_seed = advantage_per_seed(pd.concat([best, seed1], ignore_index=True))
    assert sorted(per_seed.advantage) == [pytest.approx(1.5), pytest.approx(3)]
    summary = moe_advantage(per_seed, confidence=0.95).iloc[0]
    assert summary.advantage == pytest.approx(4.5**0.5) and summary.seeds == 2
    assert summary.advantage_low < 1.5 and summary.advantage_high > 3  # t(0.975, 1 df) = 12.7: a wide interval


def test_student_label():
    assert student_label(pd.Series({"kind": "mlp"})) == "MLP"
    assert (
        student_label(pd.Series({"kind": "moe", "router": "lowrank", "rank": 128.0, "experts": 1024.0}))
        == "MoE lowrank r=128, m=1024"
    )
    assert (
        student_label(pd.Series({"kind": "moe", "router": "fullrank", "rank": None, "experts": 64}))
        == "MoE fullrank, m=64"
    )


def with_kinds(m: dict, shares: dict[str, tuple[float, float]], usage: dict | None = None) -> dict:
    """`m` with a by_kind report at its best FVU: kind -> (variance share, fvu against that share)."""
    by_kind = {
        kind: {
            "rows": 10,
            "variance_share": share,
            "error_share": share * fvu / m["best_fvu"],
            "mse": 0.1,
            "fvu": fvu,
            "fvu_own": fvu * 2,
        }
        for kind, (share, fvu) in shares.items()
    }
    return {**m, "val_rows": 20, "by_kind": by_kind, "router_usage": usage}


def test_fvu_by_kind_table_has_a_row_per_run_and_kind_and_one_for_all_rows():
    from secret_moe.aggregate import fvu_by_kind_table

    moe = "moe_lowrank_r4_m16_s2_k2"
    usage = {
        kind: {"rows": 10, "distinct_experts": n, "top_experts_share": 0.5} for kind, n in (("token", 9), ("pad", 2))
    }
    usage["all"] = {"rows": 20, "distinct_experts": 10, "top_experts_share": 0.4}
    metrics = [
        with_kinds(
            metric("tiny", 1, "activations", "mlp_h8", 1e-3, 0, [0.5, 0.3]), {"token": (0.4, 0.6), "pad": (0.6, 0.1)}
        ),
        with_kinds(
            metric("tiny", 1, "activations", moe, 1e-3, 0, [0.4]), {"token": (0.5, 0.7), "pad": (0.5, 0.1)}, usage
        ),
        metric("tiny", 1, "gaussian", "mlp_h8", 1e-3, 0, [0.6]),  # no kinds: its "all" row only
    ]
    table = fvu_by_kind_table(metrics, families_for(metrics))
    assert len(table) == 3 + 3 + 1
    assert set(table.row_kind) == {"token", "pad", "all"}
    for (_, data, student), run in table.groupby(["model", "data", "student"]):
        whole = run[run.row_kind == "all"].iloc[0]
        parts = run[run.row_kind != "all"]
        if data == "activations":  # the parts recombine into the run's best FVU
            assert (parts.variance_share * parts.fvu).sum() == pytest.approx(whole.fvu)
            assert parts.error_share.sum() == pytest.approx(1.0)
        assert whole.fvu == min(m["best_fvu"] for m in metrics if (m["data"], m["student"]) == (data, student))
    moe_rows = table[table.student == moe].set_index("row_kind")
    assert moe_rows.distinct_experts.to_dict() == {"all": 10, "pad": 2, "token": 9}
    assert table[table.student == "mlp_h8"].distinct_experts.isna().all()
    assert set(table.kind) == {"mlp", "moe"} and set(table.families) == {"main"}


def test_learning_rate_choice_places_each_seeds_best_rate_in_the_grid():
    from secret_moe.aggregate import learning_rate_choice

    student = "mlp_h8"
    # seed -> FVU per rate (1e-3, 3e-3, 1e-2): best at the lowest, the highest, inside, the highest
    fvus = {0: (0.40, 0.50, 0.60), 1: (0.60, 0.50, 0.40), 2: (0.50, 0.40, 0.60), 3: (0.55, 0.50, 0.44)}
    metrics = [
        metric("tiny", 1, "activations", student, lr, seed, [fvu + 0.1, fvu])
        for seed, by_rate in fvus.items()
        for lr, fvu in zip((1e-3, 3e-3, 1e-2), by_rate, strict=True)
    ]
    # a run outside the budgets read is not counted, however good
    metrics.append(metric("tiny", 1, "activations", student, 1e-3, 1, [0.01], epochs=40))
    runs = runs_table(metrics, families_for(metrics))
    row = learning_rate_choice(runs, [10]).iloc[0]
    assert row.rates == "0.001;0.003;0.01" and row.seeds == 4
    assert (row.at_lowest, row.at_highest, row.inside) == (1, 2, 1)
    assert row.edge_share == pytest.approx(0.75)
    gains = [0.5 / 0.4 - 1, 0.5 / 0.4 - 1, 0.5 / 0.4 - 1, 0.50 / 0.44 - 1]
    assert row.gain_over_runner_up == pytest.approx(np.mean(gains))
    assert row.kind == "mlp" and row.active_neurons == 8

    # two rates: every best is at an edge; one rate: no edge to speak of
    two = runs[runs.lr != 3e-3]
    assert learning_rate_choice(two, [10]).iloc[0].edge_share == 1.0
    one = learning_rate_choice(runs[runs.lr == 3e-3], [10]).iloc[0]
    assert math.isnan(one.edge_share) and math.isnan(one.gain_over_runner_up)
