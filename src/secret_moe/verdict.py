"""The package's answer to the paper's question, per model, layer, D_act variant and MoE size.

At equal active neurons, does a sparse MoE student approximate the teacher MLP better than a dense MLP on
real activations, and not on the Gaussian control?  The MoE advantage (the MLP width that matches the MoE's
FVU, over the MoE's active neurons) is computed per seed; its mean over seeds gets a t-interval.  The rule
(README "The verdict"), on the two sides' intervals:

- supports: the real interval lies above 1 and above the Gaussian one;
- contradicts: the real interval lies below 1 or below the Gaussian one;
- undecided: anything else (the intervals overlap, an open side, or fewer than two seeds).

What the intervals hold depends on what the budget check measured:

- under a budget ladder of three rungs or more (`ladder_verdict`), each student's FVU is the best over the
  rungs so far, and the training still to come (`remaining.remaining_fall`) widens each side: an MoE that may
  still improve raises the side's high end, MLPs that may still improve lower its low end, and a fall without
  bound opens that end (0 or inf).  No tolerance enters the word;
- otherwise (`budget_check.factor` runs, or a ladder of two rungs) a student whose FVU moved by more than
  `tolerance` between the two budgets makes its side a bound (`side_interval`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from secret_moe.aggregate import LOWER, POINT, UPPER, advantage_per_seed, best_per_seed, interval
from secret_moe.remaining import envelope, lowered, remaining_fall

REAL, GAUSSIAN = "activations", "gaussian"
WORDS = ("supports", "contradicts", "undecided")


def budget_check_table(
    runs: pd.DataFrame, epochs: int, factor: int, seeds: list[int], tolerance: float
) -> pd.DataFrame:
    """Per point and check seed: the best FVU at `epochs` and at `factor` x `epochs`, its relative change,
    whether it converged; for MoE points also the advantage at both budgets."""
    short = best_per_seed(runs, epochs)
    long = best_per_seed(runs, epochs * factor)
    keys = POINT + ["seed"]
    table = short[short.seed.isin(seeds) & short.families.str.contains("main")]
    table = table[keys + ["kind", "active_neurons", "best_fvu"]].rename(columns={"best_fvu": "fvu"})
    table = table.merge(long[keys + ["best_fvu"]].rename(columns={"best_fvu": "fvu_long"}), on=keys, how="left")
    table["epochs"], table["epochs_long"] = epochs, epochs * factor
    table["fvu_change"] = (table.fvu_long - table.fvu).abs() / table.fvu_long
    table["converged"] = table.fvu_change <= tolerance  # a missing long run (nan) is not converged
    advantage = advantage_per_seed(short)[keys + ["advantage"]]
    advantage_long = advantage_per_seed(long)[keys + ["advantage"]].rename(columns={"advantage": "advantage_long"})
    table = table.merge(advantage, on=keys, how="left").merge(advantage_long, on=keys, how="left")
    columns = keys + [
        "kind",
        "active_neurons",
        "epochs",
        "epochs_long",
        "fvu",
        "fvu_long",
        "fvu_change",
        "converged",
        "advantage",
        "advantage_long",
    ]
    return table[columns].sort_values(keys, ignore_index=True)


def verdict_word(real: tuple[float, float, float], gaussian: tuple[float, float, float], converged: bool = True) -> str:
    """The README's rule on two (mean, low, high) intervals of the MoE advantage (a bound's open side is 0 or
    inf: see `side_interval`)."""
    (_, real_low, real_high), (_, gauss_low, gauss_high) = real, gaussian
    if not converged or any(math.isnan(v) for v in (real_low, real_high, gauss_low, gauss_high)):
        return "undecided"
    if real_low > 1 and real_low > gauss_high:
        return "supports"
    if real_high < 1 or real_high < gauss_low:
        return "contradicts"
    return "undecided"


def side_interval(
    group: pd.DataFrame, confidence: float, moe_converged: bool, mlps_converged: bool
) -> tuple[tuple[float, float, float], str]:
    """The advantage interval of one data side over seeds, and what kind of number it is.

    Where the advantage is only a bound, the interval's open side becomes 0 or inf, so that the rule cannot
    rest on it: an MoE better than the widest MLP, or one that has not converged beside converged MLPs (more
    training only lowers its FVU, so raises its advantage), gives a lower bound (high = inf); an MoE worse
    than the narrowest MLP, or unconverged MLPs (more training lowers their curve, so the advantage), give an
    upper bound (low = 0); both at once leave (0, inf).
    """
    bounds = {bound for bound in group.get("bound", []) if isinstance(bound, str)}
    values = group.advantage.where(group.advantage.notna(), group.get("advantage_bound", group.advantage))
    mean, low, high = interval(values, confidence)
    lower = LOWER in bounds or not moe_converged
    upper = UPPER in bounds or not mlps_converged
    if lower and not math.isnan(high):  # without an interval (one seed, an unmatched seed) there is no bound
        high = math.inf
    if upper and not math.isnan(low):
        low = 0.0
    reasons = []
    if LOWER in bounds:
        reasons.append("lower bound: the MoE beats the widest MLP")
    if UPPER in bounds:
        reasons.append("upper bound: the MoE is worse than the narrowest MLP")
    if not moe_converged:
        reasons.append("lower bound: the MoE has not converged")
    if not mlps_converged:
        reasons.append("upper bound: the MLPs have not converged")
    return (mean, low, high), "; ".join(reasons) or "measured"


def widened_advantage(per_seed: pd.DataFrame, remaining: pd.DataFrame) -> pd.DataFrame:
    """`advantage_per_seed` of `per_seed`, and beside it the advantage once the training still to come is done
    (`remaining.remaining_fall`): `_up` with every MoE's FVU lowered by its fall (inf where unbounded), `_down`
    with every MLP's lowered (`remaining.lowered`: an MLP whose fall is unbounded goes to the floor, its worst case,
    so the matching width shrinks at most to the crossing on its narrower neighbour, and the side opens below only
    where the MoE may then be worse than the narrowest MLP)."""
    keys = POINT + ["seed"]
    table = advantage_per_seed(per_seed)
    for suffix, kind in (("_up", "moe"), ("_down", "mlp")):
        changed, unbounded = lowered(per_seed, remaining, kind)
        moved = advantage_per_seed(changed)[keys + ["advantage", "bound", "advantage_bound"]]
        moved = moved.rename(columns={c: c + suffix for c in ("advantage", "bound", "advantage_bound")})
        table = table.merge(moved, on=keys, how="left")
        if kind == "moe":  # an MoE with no bound on its fall may beat any MLP: that side is open above
            hit = table[keys].merge(unbounded[keys].drop_duplicates(), on=keys, how="left", indicator=True)
            table.loc[(hit["_merge"] == "both").to_numpy(), "advantage" + suffix] = math.inf
    return table


def _end(group: pd.DataFrame, suffix: str, confidence: float) -> tuple[float, str]:
    """The high (`_up`) or low (`_down`) end of a side once its remaining training is done: that end of the
    t-interval of the moved advantages, or open (inf or 0, with the reason) where an MoE's fall is unbounded or the
    moved curves leave the measured MLP widths on that side."""
    up = suffix == "_up"
    values = group["advantage" + suffix]
    if up and values.isin([math.inf]).any():
        return math.inf, "open above: an MoE's fall still to come is unbounded"
    if (group["bound" + suffix] == (LOWER if up else UPPER)).any():
        where = "beat the widest MLP" if up else "be worse than the narrowest MLP"
        return (math.inf, 0.0)[
            not up
        ], f"open {('below', 'above')[up]}: with the training still to come the MoE may {where}"
    _, low, high = interval(values.where(values.notna(), group["advantage_bound" + suffix]), confidence)
    return (high if up else low), ""


def widened_side(group: pd.DataFrame, confidence: float) -> tuple[tuple[float, float, float], tuple[float, float], str]:
    """One data side under a ladder: (mean, low, high) with the training still to come, the seeds-only
    (low, high), and what kind of number it is."""
    (mean, seeds_low, seeds_high), kind = side_interval(group, confidence, True, True)
    if math.isnan(seeds_low):  # one seed, or an unmatched one: no interval to widen
        return (mean, seeds_low, seeds_high), (seeds_low, seeds_high), kind
    (high, why_high), (low, why_low) = _end(group, "_up", confidence), _end(group, "_down", confidence)
    high, low = max(high, seeds_high), min(low, seeds_low)
    notes = [] if kind == "measured" else [kind]
    notes += [
        why for why, end, seeds in ((why_high, high, seeds_high), (why_low, low, seeds_low)) if why and end != seeds
    ]
    share = _share(low, high, seeds_low, seeds_high)
    notes = notes or [f"measured; the training still to come makes {share:.0%} of the interval"]
    return (mean, low, high), (seeds_low, seeds_high), "; ".join(notes)


def _share(low: float, high: float, seeds_low: float, seeds_high: float) -> float:
    """The share of an interval's width (log scale) that the training still to come adds to the seeds'."""
    total = math.log(high / low) if 0 < low and math.isfinite(high) else math.inf
    seeds = math.log(seeds_high / seeds_low) if 0 < seeds_low and math.isfinite(seeds_high) else math.inf
    if math.isinf(total):
        return 1.0 if math.isfinite(seeds) else math.nan
    return 1 - seeds / total if total > 0 else 0.0


def verdict_table(
    per_seed_advantage: pd.DataFrame, check: pd.DataFrame | None, confidence: float, tolerance: float | None
) -> pd.DataFrame:
    """One row per (model, layer, MoE student of the main comparison): the advantage on real and Gaussian
    data with their intervals (log scale; an open side 0 or inf), the budget check's outcome for every
    student involved (that MoE and the main comparison's MLPs, on both data), and the verdict word.

    Given `widened_advantage` (columns `advantage_up`/`_down`), each side's interval carries the training
    still to come, and the table adds the seeds-only interval, the share of the width the remaining training
    adds and the margin between the sides; the budget check is then reported, not used."""
    widened = "advantage_up" in per_seed_advantage.columns
    rows = []
    for (model, layer, student), group in per_seed_advantage.groupby(["model", "layer", "student"], sort=True):
        row = {
            "model": model,
            "layer": layer,
            "student": student,
            "active_neurons": group.active_neurons.iloc[0],
            "seeds": int(group.seed.nunique()),
        }
        sides = {}
        for name, data in (("real", REAL), ("gaussian", GAUSSIAN)):
            mine = group[group.data == data]
            if widened:
                (mean, low, high), (seeds_low, seeds_high), kind = widened_side(mine, confidence)
                row |= {f"{name}_seeds_low": seeds_low, f"{name}_seeds_high": seeds_high}
                row[f"{name}_training_share"] = _share(low, high, seeds_low, seeds_high)
            else:
                moe_ok, mlps_ok = _side_converged(check, model, layer, student, data)
                (mean, low, high), kind = side_interval(mine, confidence, moe_ok, mlps_ok)
            sides[name] = (mean, low, high)
            row |= {f"advantage_{name}": mean, f"{name}_low": low, f"{name}_high": high, f"{name}_is": kind}
        if widened:
            row["margin"] = sides["real"][1] / sides["gaussian"][2] if sides["gaussian"][2] > 0 else math.inf
        converged, change, note = _convergence(check, model, layer, student, tolerance)
        row |= {"converged": converged, "max_fvu_change": change, "convergence": note}
        if check is not None:
            mine = check[(check.model == model) & (check.layer == layer) & (check.student == student)]
            for name, data in (("real", REAL), ("gaussian", GAUSSIAN)):
                row[f"advantage_{name}_long"] = mine[mine.data == data].advantage_long.mean()
        row["verdict"] = verdict_word(sides["real"], sides["gaussian"])
        rows.append(row)
    return pd.DataFrame(rows)


def ladder_verdict(
    runs: pd.DataFrame, budgets: list[int], seeds: list[int], confidence: float, tolerance: float
) -> pd.DataFrame:
    """The verdict at the last of `budgets` (a doubling ladder): FVUs are the best over the rungs so far, each
    side widened by the training still to come (open with fewer than three rungs); the budget check of the
    last two rungs is reported beside it."""
    check = (
        budget_check_table(runs, budgets[-2], 2, seeds, tolerance)
        if len(budgets) > 1
        else _unchecked(runs, budgets[-1])
    )
    per_seed = envelope(runs, budgets)
    remaining = remaining_fall(runs, budgets)
    return verdict_table(widened_advantage(per_seed, remaining), check, confidence, tolerance)


def ladder_table(
    runs: pd.DataFrame, budgets: list[int], seeds: list[int], confidence: float, tolerance: float
) -> pd.DataFrame:
    """The verdict at every rung of a budget ladder (`ladder_verdict` on the rungs up to it): below
    `remaining.MIN_RUNGS` rungs the training still to come is unbounded, so every side is open and the word
    undecided."""
    tables = [
        ladder_verdict(runs, budgets[: i + 1], seeds, confidence, tolerance).assign(epochs=budget)
        for i, budget in enumerate(budgets)
    ]
    if not tables:
        return pd.DataFrame()
    table = pd.concat(tables, ignore_index=True)
    first = ["model", "layer", "student", "epochs"]
    return table[first + [c for c in table.columns if c not in first]]


def final_rung(ladder: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """The verdict table of a ladder's last rung (`ladder_table`'s rows at `epochs`, without the column): the same
    table `ladder_verdict` gives over all the rungs, not computed a second time."""
    if ladder.empty:
        return ladder
    return ladder[ladder.epochs == epochs].drop(columns="epochs").reset_index(drop=True)


def _unchecked(runs: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """A budget check table in which nothing converged (the ladder's first rung has nothing to compare to)."""
    at = best_per_seed(runs, epochs)
    at = at[at.families.str.contains("main")]
    return at[POINT + ["seed", "kind"]].assign(fvu_change=np.nan, converged=False, advantage_long=np.nan)


def _side_converged(
    check: pd.DataFrame | None, model: str, layer: int, moe_student: str, data: str
) -> tuple[bool, bool]:
    """(the MoE converged, every MLP of the main comparison converged) on one data side; False without a check."""
    if check is None:
        return False, False
    mine = check[(check.model == model) & (check.layer == layer) & (check.data == data)]
    moe, mlps = mine[mine.student == moe_student], mine[mine.kind == "mlp"]
    return bool(len(moe)) and bool(moe.converged.all()), bool(len(mlps)) and bool(mlps.converged.all())


def _convergence(
    check: pd.DataFrame | None, model: str, layer: int, moe_student: str, tolerance: float | None
) -> tuple[bool, float, str]:
    if check is None or tolerance is None:
        return False, float("nan"), "not checked (experiments.budget_check is off)"
    involved = check[(check.model == model) & (check.layer == layer)]
    involved = involved[(involved.kind == "mlp") | (involved.student == moe_student)]
    if involved.empty:
        return False, float("nan"), "not checked"
    change = float(np.nanmax(involved.fvu_change)) if involved.fvu_change.notna().any() else float("nan")
    if not involved.converged.all():
        worst = involved.loc[involved.fvu_change.fillna(np.inf).idxmax()]
        moved = "has no longer run" if math.isnan(worst.fvu_change) else f"moved {worst.fvu_change:.1%}"
        return False, change, f"no: {worst.student} on {worst.data} {moved} (tolerance {tolerance:.0%})"
    return True, change, f"yes: every student within {change:.1%} (tolerance {tolerance:.0%})"
