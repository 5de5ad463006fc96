"""The training still to come: how far each student's FVU may still fall, from its budget ladder.

A ladder (`schedule.Schedule.budgets`) gives every student's best FVU at budgets b, 2b, 4b, ...  The package
reads it through a monotone envelope, the best FVU over the rungs up to each budget (`envelope`): a longer
rung is a cooldown branch of its own and can end a little worse than a shorter one, and the best over the
rungs is what a researcher who trained that long would report.

If the FVU approaches its limit as a power law, F(b) = F_inf + c b^-alpha, then on a doubling ladder its
drops per doubling form a geometric series with ratio r = 2^-alpha, and what is left after the last rung is
the series' tail, d_last r / (1 - r).  `remaining_fall` takes r from the last two drops of the seed-mean
envelope (pooled over seeds, which steadies a ratio of two small differences; the last drops because they
are the nearest to the tail) and gives each seed the tail of its own last drop.  Where the drops did not
shrink (r >= 1, or a drop after none) the ladder shows no slowing to extrapolate from, and the fall left is
unbounded (inf).  With fewer than three rungs there is no ratio: unbounded too.  docs/convergence.md argues
the choice and what it assumes.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from secret_moe.aggregate import POINT, best_per_seed

MIN_RUNGS = 3  # two drops give the ratio of a geometric tail


def envelope(runs: pd.DataFrame, budgets: list[int]) -> pd.DataFrame:
    """`best_per_seed` at the last of `budgets`, with `best_fvu` replaced by the best over all of `budgets`
    (the monotone envelope) and the budget that reached it in `envelope_epochs`."""
    last = best_per_seed(runs, budgets[-1])
    rungs = pd.concat(
        [best_per_seed(runs, b)[POINT + ["seed", "best_fvu", "epochs"]] for b in budgets], ignore_index=True
    )
    best = rungs.loc[rungs.groupby(POINT + ["seed"])["best_fvu"].idxmin().to_numpy()] if len(rungs) else rungs
    best = best.rename(columns={"epochs": "envelope_epochs"})
    table = last.drop(columns="best_fvu").merge(best, on=POINT + ["seed"], how="left")
    return table[list(last.columns) + ["envelope_epochs"]]


def _tail_ratio(means: list[float]) -> float:
    """r = last drop / the drop before, of a falling sequence of means (inf where no slowing is shown)."""
    before, last = means[-3] - means[-2], means[-2] - means[-1]
    if last <= 0:
        return 0.0
    return last / before if before > 0 else math.inf


def remaining_fall(runs: pd.DataFrame, budgets: list[int]) -> pd.DataFrame:
    """Per point and seed, at the last of `budgets`: the envelope FVU (`fvu`), its last drop, the point's
    tail ratio r and the fall still to come (`remaining`: d_last r / (1 - r), inf if unbounded)."""
    rungs = [envelope(runs, budgets[: i + 1]) for i in range(len(budgets))]
    table = rungs[-1][POINT + ["seed", "kind", "best_fvu"]].rename(columns={"best_fvu": "fvu"})
    if len(budgets) < MIN_RUNGS:
        return table.assign(last_drop=np.nan, ratio=np.inf, remaining=np.inf)
    keys = POINT + ["seed"]
    before = rungs[-2][keys + ["best_fvu"]].rename(columns={"best_fvu": "fvu_before"})
    table = table.merge(before, on=keys, how="left")
    table["last_drop"] = table.fvu_before - table.fvu
    means = pd.concat([r.groupby(POINT)["best_fvu"].mean().rename(i) for i, r in enumerate(rungs[-3:])], axis=1)
    ratios = means.apply(lambda row: _tail_ratio(list(row)), axis=1).rename("ratio").reset_index()
    table = table.merge(ratios, on=POINT, how="left")
    finite = table.ratio < 1
    table["remaining"] = np.where(finite, table.last_drop * table.ratio / (1 - table.ratio.where(finite, 0)), np.inf)
    table.loc[table.remaining.isna(), "remaining"] = np.inf  # a seed without a shorter rung
    return table.drop(columns="fvu_before")


def lowered(per_seed: pd.DataFrame, remaining: pd.DataFrame, kind: str) -> tuple[pd.DataFrame, pd.Series]:
    """`per_seed` with the FVU of every student of `kind` lowered by its fall still to come, floored at a
    hundredth of itself (where an unbounded fall takes it too: its worst case), each seed's MLP curve then made
    monotone in width; and which (point, seed) rows of that kind have an unbounded fall."""
    keys = POINT + ["seed"]
    table = per_seed.merge(remaining[keys + ["remaining"]], on=keys, how="left")
    mine = table.kind == kind
    fall = table.remaining.where(mine, 0.0).fillna(np.inf)
    unbounded = mine & ~np.isfinite(fall)
    table["best_fvu"] = np.maximum(table.best_fvu - fall, table.best_fvu / 100)
    if kind == "mlp":  # a wider MLP can do what a narrower one does (extra neurons at zero): the curve stays monotone
        mlps = table[mine].sort_values("active_neurons")
        table.loc[mlps.index, "best_fvu"] = mlps.groupby(["model", "layer", "data", "seed"]).best_fvu.cummin()
    return table.drop(columns="remaining"), table[unbounded][keys]
