"""The package's answer to the paper's question, per model, layer, D_act variant and MoE size.

At equal active neurons, does a sparse MoE student approximate the teacher MLP better than a dense MLP on
real activations, and not on the Gaussian control?  The MoE advantage (the MLP width that matches the MoE's
FVU, over the MoE's active neurons) is computed per seed; its mean over seeds gets a t-interval.  The budget
check trains the main comparison again at `factor` times the epochs: a student whose best FVU moves by more
than `tolerance` (relative to the longer budget) between the two is unconverged.  The rule (README "The
verdict"):

- supports: every student involved converged, and the real interval lies above 1 and above the Gaussian one;
- contradicts: every student converged, and the real interval lies below 1 or below the Gaussian one;
- undecided: anything else (the intervals overlap, a student did not converge or was not checked, an
  advantage fell outside the measured MLP widths, or fewer than two seeds).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from secret_moe.aggregate import POINT, advantage_per_seed, best_per_seed, interval

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


def verdict_word(real: tuple[float, float, float], gaussian: tuple[float, float, float], converged: bool) -> str:
    """The README's rule on two (mean, low, high) intervals of the MoE advantage."""
    (_, real_low, real_high), (_, gauss_low, gauss_high) = real, gaussian
    if not converged or any(math.isnan(v) for v in (real_low, real_high, gauss_low, gauss_high)):
        return "undecided"
    if real_low > 1 and real_low > gauss_high:
        return "supports"
    if real_high < 1 or real_high < gauss_low:
        return "contradicts"
    return "undecided"


def verdict_table(
    per_seed_advantage: pd.DataFrame, check: pd.DataFrame | None, confidence: float, tolerance: float | None
) -> pd.DataFrame:
    """One row per (model, layer, MoE student of the main comparison): the advantage on real and Gaussian
    data with their intervals, the budget check's outcome for every student involved (that MoE and the
    main comparison's MLPs, on both data), and the verdict word."""
    rows = []
    for (model, layer, student), group in per_seed_advantage.groupby(["model", "layer", "student"], sort=True):
        real = interval(group[group.data == REAL].advantage, confidence)
        gauss = interval(group[group.data == GAUSSIAN].advantage, confidence)
        row = {
            "model": model,
            "layer": layer,
            "student": student,
            "active_neurons": group.active_neurons.iloc[0],
            "seeds": int(group.seed.nunique()),
        }
        for name, (mean, low, high) in (("real", real), ("gaussian", gauss)):
            row |= {f"advantage_{name}": mean, f"{name}_low": low, f"{name}_high": high}
        converged, change, note = _convergence(check, model, layer, student, tolerance)
        row |= {"converged": converged, "max_fvu_change": change, "convergence": note}
        if check is not None:
            mine = check[(check.model == model) & (check.layer == layer) & (check.student == student)]
            for name, data in (("real", REAL), ("gaussian", GAUSSIAN)):
                row[f"advantage_{name}_long"] = mine[mine.data == data].advantage_long.mean()
        row["verdict"] = verdict_word(real, gauss, converged)
        rows.append(row)
    return pd.DataFrame(rows)


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
