"""The training still to come: the envelope over rungs, the geometric tail of a doubling ladder, and the verdict
sides it widens."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from secret_moe.aggregate import runs_table
from secret_moe.remaining import envelope, remaining_fall
from secret_moe.testing import families_for, metric
from secret_moe.verdict import final_rung, ladder_table, ladder_verdict

MOE = "moe_lowrank_r8_m64_s4_k4"  # 8 active neurons
BUDGETS = [5, 10, 20]


def ladder_runs(fvu_at, seeds=(0,), datas=("activations",), widths=(4, 8, 16, 32)):
    """runs.csv of one run per student and seed whose rungs have the FVUs `fvu_at(data, student, seed, budget)`."""
    metrics = []
    for seed in seeds:
        for data in datas:
            for student in [f"mlp_h{w}" for w in widths] + [MOE]:
                rungs = {b: fvu_at(data, student, seed, b) for b in BUDGETS}
                m = metric("tiny", 1, data, student, 1e-3, seed, [1.0, rungs[BUDGETS[-1]]], BUDGETS[-1])
                m["rungs"] = [{"epochs": b, "best_fvu": f, "best_epoch": b, "final_fvu": f} for b, f in rungs.items()]
                metrics.append(m)
    return runs_table(metrics, families_for(metrics))


def power_law(limit, scale, alpha):
    return lambda budget: limit + scale * budget**-alpha


def test_the_tail_of_a_power_law_ladder_is_its_distance_to_the_limit():
    # F(b) = F_inf + c b^-alpha on budgets b, 2b, 4b: drops shrink by 2^-alpha, and their geometric tail is
    # exactly F(4b) - F_inf, whatever the exponent
    for alpha in (0.3, 1.0, 2.0):
        curve = power_law(0.2, 0.5, alpha)
        runs = ladder_runs(lambda data, student, seed, b, curve=curve: curve(b) * (1.5 if "mlp" in student else 1))
        moe = remaining_fall(runs, BUDGETS).query("student == @MOE").iloc[0]
        assert moe.ratio == pytest.approx(2**-alpha)
        assert moe.remaining == pytest.approx(curve(20) - 0.2)
        assert moe.fvu == pytest.approx(curve(20))


def test_the_envelope_keeps_the_best_rung_so_far():
    # the 20-epoch cooldown branch ends worse than the 10-epoch one: the envelope keeps 10's FVU
    fvus = {5: 0.6, 10: 0.5, 20: 0.52}
    runs = ladder_runs(lambda data, student, seed, b: fvus[b])
    table = envelope(runs, BUDGETS)
    assert set(table.best_fvu) == {0.5} and set(table.envelope_epochs) == {10}
    # no drop over the last doubling: nothing more to come
    assert set(remaining_fall(runs, BUDGETS).remaining) == {0.0}


def test_drops_that_do_not_shrink_leave_the_fall_unbounded():
    fvus = {5: 0.6, 10: 0.55, 20: 0.49}  # 0.05 then 0.06: no slowing to extrapolate from
    runs = ladder_runs(lambda data, student, seed, b: fvus[b])
    assert (remaining_fall(runs, BUDGETS).remaining == math.inf).all()
    # and with two rungs there is no ratio at all
    assert (remaining_fall(runs, BUDGETS[:2]).remaining == math.inf).all()


def test_the_ratio_is_pooled_over_seeds_and_the_tail_is_each_seeds_own():
    # seed 0 drops 0.04 then 0.02, seed 1 0.08 then 0.01: seed-mean drops 0.06, 0.015 (r = 0.25)
    fvus = {0: {5: 0.56, 10: 0.52, 20: 0.50}, 1: {5: 0.59, 10: 0.51, 20: 0.50}}
    runs = ladder_runs(lambda data, student, seed, b: fvus[seed][b], seeds=(0, 1))
    moe = remaining_fall(runs, BUDGETS).query("student == @MOE").set_index("seed")
    assert moe.ratio.tolist() == pytest.approx([0.25, 0.25])
    assert moe.remaining.tolist() == pytest.approx([0.02 * 0.25 / 0.75, 0.01 * 0.25 / 0.75])


def mlp_curve(width, budget, tail=0.0):
    """FVU 2 / sqrt(width) at 20 epochs, above it by tail x (3, 1) at 5 and 10: drops halve, `tail` is left."""
    return 2 * width**-0.5 * (1 + tail * {5: 3, 10: 1, 20: 0}[budget])


def test_an_moe_still_falling_widens_its_side_upward_and_mlps_still_falling_widen_it_downward():
    # the real MoE matches the width-16 MLP (advantage 2) at 20 epochs and halves its distance each doubling
    # (its remaining fall is its last drop); the Gaussian MLPs still fall the same way
    def fvu(data, student, seed, budget):
        noise = 1 + 0.002 * seed
        if student == MOE:
            tail = 0.05 if data == "activations" else 0.0
            return mlp_curve(16 if data == "activations" else 8, budget, tail) * noise
        return mlp_curve(int(student[5:]), budget, 0.0 if data == "activations" else 0.02)

    runs = ladder_runs(fvu, seeds=(0, 1, 2), datas=("activations", "gaussian"))
    row = ladder_verdict(runs, BUDGETS, [0, 1, 2], confidence=0.95, tolerance=0.03).iloc[0]
    assert row.advantage_real == pytest.approx(2.0, rel=0.02)
    assert row.real_low == pytest.approx(row.real_seeds_low)  # the real MLPs have converged exactly
    assert row.real_high > row.real_seeds_high * 1.05  # the MoE's 5% tail, in advantage units (slope -1/2: x1.1)
    assert row.gaussian_low < row.gaussian_seeds_low and row.gaussian_high == pytest.approx(row.gaussian_seeds_high)
    assert 0 < row.real_training_share < 1 and 0 < row.gaussian_training_share < 1
    assert row.margin == pytest.approx(row.real_low / row.gaussian_high)
    assert row.verdict == "supports"


@pytest.mark.parametrize("unbounded", [32, 4])
def test_an_mlp_whose_fall_is_unbounded_is_taken_to_its_worst_case_not_to_an_open_side(unbounded):
    # every student converged but one MLP, whose drops grow: no bound on its fall, so it is taken to the floor.  The
    # real MoE matches width 16 (advantage 2), the Gaussian width 8 (advantage 1)
    def fvu(data, student, seed, budget):
        if student == MOE:
            return mlp_curve(16 if data == "activations" else 8, budget) * (1 + 0.002 * seed)
        if student == f"mlp_h{unbounded}":
            return mlp_curve(unbounded, 20) * {5: 1.03, 10: 1.02, 20: 1.0}[budget]  # drops 0.01 then 0.02
        return mlp_curve(int(student[5:]), 20)

    runs = ladder_runs(fvu, seeds=(0, 1, 2), datas=("activations", "gaussian"))
    falls = remaining_fall(runs, BUDGETS)
    assert (falls[falls.student == f"mlp_h{unbounded}"].remaining == math.inf).all()
    row = ladder_verdict(runs, BUDGETS, [0, 1, 2], confidence=0.95, tolerance=0.03).iloc[0]
    if unbounded == 32:  # the widest MLP, beyond both crossings: whatever it reaches, no matching width changes
        assert (row.real_low, row.gaussian_low) == (pytest.approx(row.real_seeds_low), row.gaussian_seeds_low)
        assert row.verdict == "supports"
    else:  # the narrowest: at its worst case it beats both MoEs, and so does every wider MLP (a monotone curve)
        assert (row.real_low, row.gaussian_low) == (0, 0) and "narrowest" in row.real_is + row.gaussian_is
        assert row.verdict == "undecided"


def test_a_word_the_seeds_alone_would_give_is_withheld_when_the_training_still_to_come_closes_the_gap():
    # real advantage ~1.2 measured, Gaussian ~1.0, both MoEs still falling fast (drops halve): the Gaussian MoE's
    # remaining fall lifts its side's high end above the real low end
    def fvu(data, student, seed, budget):
        if student == MOE:
            width = 9.6 if data == "activations" else 8.0
            return mlp_curve(width, budget, 0.15 if data == "gaussian" else 0.0) * (1 + 0.001 * seed)
        return mlp_curve(int(student[5:]), budget)

    runs = ladder_runs(fvu, seeds=(0, 1, 2), datas=("activations", "gaussian"))
    row = ladder_verdict(runs, BUDGETS, [0, 1, 2], confidence=0.95, tolerance=0.03).iloc[0]
    assert row.real_seeds_low > row.gaussian_seeds_high  # the seeds alone would separate the sides
    assert row.gaussian_high > row.real_low and row.margin < 1
    assert row.verdict == "undecided"


def test_the_final_verdict_is_the_ladders_last_rung():
    def fvu(data, student, seed, budget):
        if student == MOE:
            return mlp_curve(12 if data == "activations" else 8, budget, 0.05) * (1 + 0.002 * seed)
        return mlp_curve(int(student[5:]), budget, 0.01)

    runs = ladder_runs(fvu, seeds=(0, 1, 2), datas=("activations", "gaussian"))
    ladder = ladder_table(runs, BUDGETS, [0, 1, 2], confidence=0.95, tolerance=0.03)
    assert sorted(ladder.epochs) == sorted(BUDGETS)
    pd.testing.assert_frame_equal(
        final_rung(ladder, BUDGETS[-1]), ladder_verdict(runs, BUDGETS, [0, 1, 2], confidence=0.95, tolerance=0.03)
    )
