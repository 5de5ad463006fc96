"""The verdict: intervals over seeds, the budget check and the rule that turns them into one word."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from secret_moe.aggregate import ADVANTAGE_COLUMNS, interval, runs_table
from secret_moe.testing import families_for, metric
from secret_moe.verdict import budget_check_table, ladder_table, verdict_table, verdict_word

MOE = "moe_lowrank_r8_m64_s4_k4"  # 8 active neurons


def test_interval_is_the_t_interval_of_the_mean_log_advantage():
    mean, low, high = interval(pd.Series([1.0, 2.0, 4.0]), 0.95)
    # logs (0, ln 2, 2 ln 2): mean ln 2, sd ln 2; half width t(0.975, 2 df) x ln 2 / sqrt(3)
    half = 4.302652729911275 * math.log(2) / math.sqrt(3)
    assert mean == pytest.approx(2)  # the geometric mean
    assert low == pytest.approx(2 * math.exp(-half)) and high == pytest.approx(2 * math.exp(half))
    assert low * high == pytest.approx(mean**2)  # symmetric on the log scale, and positive
    assert interval(pd.Series([1.0, 2.0, 4.0]), 0.5)[2] < high  # a lower level, a narrower interval
    assert math.isnan(interval(pd.Series([2.0]), 0.95)[1])  # one seed: no interval
    assert all(math.isnan(v) for v in interval(pd.Series([2.0, math.nan]), 0.95))  # an unmatched seed


def test_budget_check_on_hand_made_results_at_two_budgets():
    # MLPs of widths 4 to 32 with FVU 2/sqrt(width) at 10 epochs; at 20 epochs the MLPs barely move (1%)
    # and the MoE falls from the width-16 MLP's FVU by 10%: it is the one unconverged student
    def curve(epochs, moe_fvu, shrink):
        rows = [
            metric("tiny", 1, data, f"mlp_h{w}", 1e-3, 0, [1.0, 2 * w**-0.5 * shrink], epochs)
            for w in (4, 8, 16, 32)
            for data in ("activations", "gaussian")
        ]
        return rows + [
            metric("tiny", 1, data, MOE, 1e-3, 0, [1.0, moe_fvu], epochs) for data in ("activations", "gaussian")
        ]

    metrics = curve(10, 2 * 16**-0.5, 1.0) + curve(20, 2 * 16**-0.5 * 0.9, 0.99)
    check = budget_check_table(runs_table(metrics, families_for(metrics)), 10, 2, [0], tolerance=0.03)
    assert len(check) == 10 and set(check.epochs_long) == {20}
    mlp = check[check.kind == "mlp"]
    assert list(mlp.fvu_change) == pytest.approx([0.01 / 0.99] * 8)
    assert mlp.converged.all()
    moe = check[check.student == MOE].iloc[0]
    assert moe.fvu_change == pytest.approx(0.1 / 0.9) and not moe.converged
    assert moe.advantage == pytest.approx(16 / 8)  # matches the width-16 MLP at 10 epochs
    # at 20 epochs it reaches 2/sqrt(w) * 0.99 with w = (0.99 / 0.9)^2 * 16
    assert moe.advantage_long == pytest.approx((0.99 / 0.9) ** 2 * 16 / 8)
    # a missing longer run is not a converged one
    short_only = [m for m in metrics if m["epochs"] == 10]
    check = budget_check_table(runs_table(short_only, families_for(short_only)), 10, 2, [0], tolerance=0.03)
    assert check.fvu_long.isna().all() and not check.converged.any()


def per_seed(real, gaussian, student=MOE):
    rows = [
        {
            "model": "tiny",
            "layer": 1,
            "data": data,
            "student": student,
            "seed": seed,
            "active_neurons": 8,
            "best_fvu": 0.5,
            "matching_mlp_width": 8 * value,
            "advantage": value,
        }
        for data, values in (("activations", real), ("gaussian", gaussian))
        for seed, value in enumerate(values)
    ]
    return pd.DataFrame(rows, columns=ADVANTAGE_COLUMNS)


def check_table(converged, student=MOE, change=0.01):
    return pd.DataFrame(
        [
            {
                "model": "tiny",
                "layer": 1,
                "data": data,
                "student": name,
                "seed": 0,
                "kind": kind,
                "fvu_change": change if ok else 0.2,
                "converged": ok,
                "advantage_long": 2.0,
            }
            for data in ("activations", "gaussian")
            for name, kind, ok in (("mlp_h8", "mlp", True), (student, "moe", converged))
        ]
    )


@pytest.mark.parametrize(
    ("real", "gaussian", "converged", "word"),
    [
        ([2.0, 2.1, 1.9], [1.0, 1.05, 0.95], True, "supports"),  # real above 1 and above the Gaussian
        ([0.8, 0.85, 0.75], [1.0, 1.05, 0.95], True, "contradicts"),  # real below 1 and below the Gaussian
        ([1.3, 1.35, 1.25], [1.6, 1.65, 1.55], True, "contradicts"),  # above 1 but below the Gaussian
        ([1.2, 1.6, 0.9], [1.0, 1.05, 0.95], True, "undecided"),  # the intervals overlap
        ([2.0, 2.1, 1.9], [1.0, 1.05, 0.95], False, "undecided"),  # the MoE failed the budget check
        ([2.0, math.nan, 1.9], [1.0, 1.05, 0.95], True, "undecided"),  # one seed beyond the widest MLP
    ],
)
def test_verdict_rule_on_hand_made_per_seed_tables(real, gaussian, converged, word):
    table = verdict_table(per_seed(real, gaussian), check_table(converged), confidence=0.95, tolerance=0.03)
    assert len(table) == 1
    row = table.iloc[0]
    assert row.verdict == word
    assert row.seeds == 3 and row.converged == converged
    if not any(map(math.isnan, real)):
        assert row.advantage_real == pytest.approx(math.prod(real) ** (1 / 3))
        assert row.real_low < row.advantage_real < row.real_high
    assert row.convergence.startswith("yes" if converged else "no: " + MOE)


def test_without_a_budget_check_every_verdict_is_undecided():
    table = verdict_table(per_seed([2.0, 2.1, 1.9], [1.0, 1.05, 0.95]), None, confidence=0.95, tolerance=None)
    assert table.iloc[0].verdict == "undecided"
    assert "not checked" in table.iloc[0].convergence


def test_verdict_word_needs_both_intervals():
    assert verdict_word((2, 1.5, 2.5), (1, 0.9, 1.1), True) == "supports"
    assert verdict_word((2, 1.5, 2.5), (1, math.nan, math.nan), True) == "undecided"


def check_sides(moe_ok, mlps_ok, student=MOE):
    """A budget check table whose MoE / MLP convergence is given per data side: {data: bool}."""
    return pd.DataFrame(
        [
            {
                "model": "tiny",
                "layer": 1,
                "data": data,
                "student": name,
                "seed": 0,
                "kind": kind,
                "fvu_change": 0.01 if ok[data] else 0.2,
                "converged": ok[data],
                "advantage_long": 2.0,
            }
            for data in ("activations", "gaussian")
            for name, kind, ok in (("mlp_h8", "mlp", mlps_ok), (student, "moe", moe_ok))
        ]
    )


BOTH = {"activations": True, "gaussian": True}


@pytest.mark.parametrize(
    ("real", "gaussian", "moe_ok", "mlps_ok", "word", "real_is"),
    [
        # an unconverged MoE beside converged MLPs is a lower bound: above the converged Gaussian, it supports
        ([2.0, 2.1, 1.9], [1.0, 1.05, 0.95], {"activations": False, "gaussian": True}, BOTH, "supports", "lower"),
        # ... but the same lower bound cannot contradict
        ([0.8, 0.85, 0.75], [1.0, 1.05, 0.95], {"activations": False, "gaussian": True}, BOTH, "undecided", "lower"),
        # a Gaussian MoE that may still improve cannot be out-run by the real one
        ([2.0, 2.1, 1.9], [1.0, 1.05, 0.95], {"activations": True, "gaussian": False}, BOTH, "undecided", "measured"),
        # unconverged MLPs make the advantage an upper bound: below 1 it still contradicts
        ([0.8, 0.85, 0.75], [1.0, 1.05, 0.95], BOTH, {"activations": False, "gaussian": True}, "contradicts", "upper"),
        ([2.0, 2.1, 1.9], [1.0, 1.05, 0.95], BOTH, {"activations": False, "gaussian": True}, "undecided", "upper"),
    ],
)
def test_the_rule_on_bounds_from_unconverged_students(real, gaussian, moe_ok, mlps_ok, word, real_is):
    table = verdict_table(per_seed(real, gaussian), check_sides(moe_ok, mlps_ok), confidence=0.95, tolerance=0.03)
    row = table.iloc[0]
    assert row.verdict == word
    assert row.real_is.startswith(real_is)
    assert (row.real_high == math.inf) == (real_is == "lower")
    assert (row.real_low == 0) == (real_is == "upper")


def test_an_moe_beyond_the_widest_mlp_is_a_lower_bound_not_a_blank():
    # MLPs 4..16 with FVU 2/sqrt(w); on real data the MoE (8 active) beats the widest MLP, so its advantage is
    # at least 16 / 8 = 2; on the Gaussian it matches the width-8 MLP (advantage 1)
    metrics = []
    for seed in (0, 1, 2):
        for data, moe_fvu in (("activations", 0.3), ("gaussian", 2 * 8**-0.5)):
            metrics += [metric("tiny", 1, data, f"mlp_h{w}", 1e-3, seed, [1.0, 2 * w**-0.5], 10) for w in (4, 8, 16)]
            metrics.append(metric("tiny", 1, data, MOE, 1e-3, seed, [1.0, moe_fvu * (1 + 0.01 * seed)], 10))
    runs = runs_table(metrics, families_for(metrics))
    from secret_moe.aggregate import advantage_per_seed, best_per_seed

    per = advantage_per_seed(best_per_seed(runs, 10))
    real = per[per.data == "activations"]
    assert real.advantage.isna().all() and (real.bound == "lower").all()
    assert list(real.advantage_bound) == [pytest.approx(2.0)] * 3
    table = verdict_table(per, check_sides(BOTH, BOTH), confidence=0.95, tolerance=0.03).iloc[0]
    assert table.advantage_real == pytest.approx(2.0) and table.real_high == math.inf
    assert table.real_is.startswith("lower bound: the MoE beats the widest MLP")
    assert table.gaussian_high < 2.0 and table.verdict == "supports"


def test_ladder_table_gives_the_word_at_every_rung():
    # a ladder 5 / 10 / 20 epochs (rungs of one run per student and seed): the MLPs flatten after 10 epochs,
    # the real MoE keeps improving until 20 and ends above the Gaussian one
    def fvu(width, budget, scale):
        return 2 * width**-0.5 * scale[budget]

    mlp_scale = {5: 1.2, 10: 1.0, 20: 0.995}
    moe_scale = {"activations": {5: 1.5, 10: 1.0, 20: 0.99}, "gaussian": {5: 1.5, 10: 1.3, 20: 1.29}}
    metrics = []
    for seed in (0, 1, 2):
        for data in ("activations", "gaussian"):
            for width in (4, 8, 16, 32):
                m = metric("tiny", 1, data, f"mlp_h{width}", 1e-3, seed, [1.0, fvu(width, 20, mlp_scale)], 20)
                m["rungs"] = [
                    {"epochs": b, "best_fvu": fvu(width, b, mlp_scale), "best_epoch": b, "final_fvu": 0}
                    for b in (5, 10, 20)
                ]
                metrics.append(m)
            # the MoE matches the width-16 MLP (advantage 2) times its scale, plus a little seed noise
            moe = {b: 2 * 16**-0.5 * moe_scale[data][b] * (1 + 0.002 * seed) for b in (5, 10, 20)}
            m = metric("tiny", 1, data, MOE, 1e-3, seed, [1.0, moe[20]], 20)
            m["rungs"] = [{"epochs": b, "best_fvu": moe[b], "best_epoch": b, "final_fvu": 0} for b in (5, 10, 20)]
            metrics.append(m)
    runs = runs_table(metrics, families_for(metrics))
    assert sorted(runs.epochs.unique()) == [5, 10, 20] and set(runs.run_epochs) == {20}
    ladder = ladder_table(runs, [5, 10, 20], [0, 1, 2], confidence=0.95, tolerance=0.03)
    assert list(ladder.epochs) == [5, 10, 20]
    words = dict(zip(ladder.epochs, ladder.verdict, strict=True))
    # first rung: nothing to compare to; second: the MoE moved 50% and the MLPs 20% (no bound decides);
    # third: everything within 1%, real advantage above the Gaussian's
    assert words == {5: "undecided", 10: "undecided", 20: "supports"}
    last = ladder[ladder.epochs == 20].iloc[0]
    assert last.converged and last.real_low > last.gaussian_high
