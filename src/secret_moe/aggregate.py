"""The results table: one row per distillation run, and the paper's per-point best over learning rates."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from secret_moe.errors import SecretMoeError
from secret_moe.layout import RUN_KEYS, run_name

POINT = ["model", "layer", "data", "student"]
_SPEC_COLUMNS = ["kind", "router", "rank", "experts", "shared", "k", "expert_width"]
_RUN_COLUMNS = ["active_neurons", "best_fvu", "best_epoch", "final_fvu", "output_variance", "parameters"]
_TIMING_COLUMNS = ["wall_seconds", "samples_per_second", "bundle_size"]  # from timing.json, if it was read


def runs_table(metrics: list[dict[str, Any]], families: dict[tuple[str, int, str], list[str]]) -> pd.DataFrame:
    """Tidy table of runs; `families` maps (model, layer, student) to the experiment families listing it.
    A metrics dict may carry its run's timing.json under "timing" (wall-clock numbers, not results).  A run
    with a budget ladder (`rungs`) also gives one row per shorter budget; `run_epochs` names the run's own."""
    rows = []
    for m in metrics:
        bad = [h["epoch"] for h in m["history"] if not math.isfinite(h["val_fvu"])]
        if bad or not math.isfinite(m["best_fvu"]):
            raise SecretMoeError(
                f"run {run_name(m)} has a non-finite FVU (epochs {bad}); delete its metrics.json and rerun it"
            )
        row = {key: m[key] for key in [*RUN_KEYS, *_RUN_COLUMNS]}
        row.update({key: m.get("timing", {}).get(key) for key in _TIMING_COLUMNS})
        row.update({key: m["spec"].get(key) for key in _SPEC_COLUMNS})
        row["families"] = ";".join(families.get((m["model"], m["layer"], m["student"]), []))
        row["run_epochs"] = m["epochs"]
        rows.append(row)
        # each shorter rung of a budget ladder (schedule.py) is a row of its own, as if trained for its budget
        for rung in (m.get("rungs") or [])[:-1]:
            rows.append({**row, **{key: rung[key] for key in ("epochs", "best_fvu", "best_epoch", "final_fvu")}})
    return pd.DataFrame(rows).sort_values(POINT + ["epochs", "lr", "seed"], ignore_index=True)


BY_KIND_COLUMNS = [
    *RUN_KEYS,
    "kind",
    "active_neurons",
    "best_epoch",
    "row_kind",
    "rows",
    "variance_share",
    "error_share",
    "mse",
    "fvu",
    "fvu_own",
    "distinct_experts",
    "top_experts_share",
    "families",
]


def fvu_by_kind_table(metrics: list[dict[str, Any]], families: dict[tuple[str, int, str], list[str]]) -> pd.DataFrame:
    """One row per run and row kind at the run's best epoch (docs/padding.md, "FVU by row kind"): its rows, its shares
    of the variance and of the squared error, its FVU against its part of the all-rows variance (Σ
    variance_share · fvu = the run's best FVU) and against its own, and, for MoE students, how many experts
    its rows' top-k selections use and the gate mass share of its most used experts.  Row kind "all" is the
    whole store (also for Gaussian stores, which have no kinds).  `families` as for `runs_table`."""
    rows = []
    for m in metrics:
        parts = dict(m.get("by_kind") or {})
        parts["all"] = {
            "rows": m.get("val_rows"),
            "variance_share": 1.0,
            "error_share": 1.0,
            "mse": m["best_fvu"] * m["output_variance"],
            "fvu": m["best_fvu"],
            "fvu_own": m["best_fvu"],
        }
        usage = m.get("router_usage") or {}
        for row_kind, part in parts.items():
            rows.append(
                {
                    **{key: m[key] for key in RUN_KEYS},
                    "kind": m["spec"]["kind"],
                    "active_neurons": m["active_neurons"],
                    "best_epoch": m["best_epoch"],
                    "row_kind": row_kind,
                    **part,
                    "distinct_experts": usage.get(row_kind, {}).get("distinct_experts"),
                    "top_experts_share": usage.get(row_kind, {}).get("top_experts_share"),
                    "families": ";".join(families.get((m["model"], m["layer"], m["student"]), [])),
                }
            )
    table = pd.DataFrame(rows, columns=BY_KIND_COLUMNS)
    return table.sort_values([*POINT, "epochs", "lr", "seed", "row_kind"], ignore_index=True)


def best_per_seed(runs: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """Per point and seed, at one training budget: the min over learning rates of the min over epochs (the
    paper's rule), with the learning rate that reached it and that run's final FVU."""
    at = runs[runs.epochs == epochs]
    best = at.loc[at.groupby(POINT + ["seed"])["best_fvu"].idxmin()].rename(columns={"lr": "best_lr"})
    return best.sort_values(POINT + ["seed"], ignore_index=True)


def best_over_lr(runs: pd.DataFrame, epochs: int) -> pd.DataFrame:
    """Per point, at one training budget: each seed's best over learning rates, then the mean over seeds,
    with their spread (standard deviation, min, max) and the learning rate most seeds chose."""
    per_seed = best_per_seed(runs, epochs)
    best = per_seed.groupby(POINT, as_index=False).agg(
        best_fvu=("best_fvu", "mean"),
        fvu_std=("best_fvu", "std"),
        fvu_min=("best_fvu", "min"),
        fvu_max=("best_fvu", "max"),
        final_fvu=("final_fvu", "mean"),
        seeds=("seed", "nunique"),
        best_lr=("best_lr", lambda lrs: lrs.mode().min()),
    )
    spec = runs.drop_duplicates(POINT)[POINT + _SPEC_COLUMNS + ["active_neurons", "families"]]
    return best.merge(spec, on=POINT).sort_values(POINT, ignore_index=True)


LEARNING_RATE_COLUMNS = POINT + [
    "kind",
    "active_neurons",
    "rates",
    "seeds",
    "at_lowest",
    "at_highest",
    "inside",
    "edge_share",
    "gain_over_runner_up",
]


def learning_rate_choice(runs: pd.DataFrame, budgets: list[int]) -> pd.DataFrame:
    """Per point: where each seed's best learning rate sits in the grid (the paper's rule takes the best; a
    best at an edge says the grid may not bracket the optimum, and with two rates every best is at one).  Each
    run counts as the verdict reads it, its best FVU over `budgets`.  `gain_over_runner_up`: the mean over seeds
    of the runner-up rate's FVU over the best one's, minus one (how much the choice moved the FVU)."""
    per_lr = runs[runs.epochs.isin(budgets)].groupby(POINT + ["seed", "lr"], as_index=False)["best_fvu"].min()
    spec = runs.drop_duplicates(POINT).set_index(POINT)
    rows = []
    for key, point in per_lr.groupby(POINT, sort=True):
        rates = sorted(point.lr.unique())
        ranked = [seed.sort_values("best_fvu") for _, seed in point.groupby("seed")]
        best = np.array([seed.lr.iloc[0] for seed in ranked])
        gains = [seed.best_fvu.iloc[1] / seed.best_fvu.iloc[0] - 1 for seed in ranked if len(seed) > 1]
        at_lowest, at_highest = int((best == rates[0]).sum()), int((best == rates[-1]).sum())
        inside = len(best) - int(((best == rates[0]) | (best == rates[-1])).sum())
        rows.append(
            {
                **dict(zip(POINT, key, strict=True)),
                "kind": spec.loc[key, "kind"],
                "active_neurons": spec.loc[key, "active_neurons"],
                "rates": ";".join(f"{rate:g}" for rate in rates),
                "seeds": len(best),
                "at_lowest": at_lowest,
                "at_highest": at_highest,
                "inside": inside,
                "edge_share": (len(best) - inside) / len(best) if len(rates) > 1 else float("nan"),
                "gain_over_runner_up": float(np.mean(gains)) if gains else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=LEARNING_RATE_COLUMNS)


def student_label(row: pd.Series) -> str:
    """Legend label: the dense MLP, or the MoE by router and expert count."""
    if row["kind"] == "mlp":
        return "MLP"
    rank = "" if row["router"] == "fullrank" else f" r={int(row['rank'])}"
    return f"MoE {row['router']}{rank}, m={int(row['experts'])}"


def mlp_width_to_match(best: pd.DataFrame, fvu: float, model: str, layer: int, data: str) -> float:
    """Width a dense MLP needs to reach `fvu`, interpolated log-log on the measured MLP curve (nan outside)."""
    mlp = best[(best.model == model) & (best.layer == layer) & (best.data == data) & (best.kind == "mlp")]
    mlp = mlp.sort_values("active_neurons")
    widths, fvus = np.log(mlp.active_neurons.to_numpy(float)), np.log(mlp.best_fvu.to_numpy(float))
    if len(mlp) < 2 or not fvus.min() <= math.log(fvu) <= fvus.max():
        return float("nan")
    # FVU falls with width: interpolate width as a function of FVU on the reversed curve
    return float(np.exp(np.interp(math.log(fvu), fvus[::-1], widths[::-1])))


ADVANTAGE_COLUMNS = POINT + [
    "seed",
    "active_neurons",
    "best_fvu",
    "matching_mlp_width",
    "advantage",
    "bound",
    "advantage_bound",
]
LOWER, UPPER = "lower", "upper"  # an advantage beyond the measured MLP widths is a bound, not a number


def _measured_range(per_seed: pd.DataFrame, row: pd.Series) -> tuple[float, float, float, float] | None:
    """(narrowest width, its FVU, widest width, its FVU) of the MLP curve of `row`'s point and seed."""
    mlp = per_seed[
        (per_seed.model == row.model)
        & (per_seed.layer == row.layer)
        & (per_seed.data == row.data)
        & (per_seed.seed == row.seed)
        & (per_seed.kind == "mlp")
    ].sort_values("active_neurons")
    if len(mlp) < 2:
        return None
    first, last = mlp.iloc[0], mlp.iloc[-1]
    return float(first.active_neurons), float(first.best_fvu), float(last.active_neurons), float(last.best_fvu)


def advantage_per_seed(per_seed: pd.DataFrame) -> pd.DataFrame:
    """For each MoE point with s = k (main comparison and layer sweep) and each seed: the width a dense MLP
    of the same seed needs to reach the MoE's FVU, and its ratio to the MoE's active neurons.  An MoE better
    than the widest MLP gets `bound` "lower" and `advantage_bound` = widest width / active neurons (its
    advantage is at least that); one worse than the narrowest gets "upper" and narrowest / active."""
    moe = per_seed[(per_seed.kind == "moe") & per_seed.families.str.contains("main|layer_sweep")]
    rows = []
    for _, row in moe.iterrows():
        width = mlp_width_to_match(per_seed[per_seed.seed == row.seed], row.best_fvu, row.model, row.layer, row.data)
        bound, bound_width = "", float("nan")
        if math.isnan(width) and (measured := _measured_range(per_seed, row)) is not None:
            narrow, narrow_fvu, wide, wide_fvu = measured
            if row.best_fvu < wide_fvu:
                bound, bound_width = LOWER, wide
            elif row.best_fvu > narrow_fvu:
                bound, bound_width = UPPER, narrow
        rows.append(
            {
                **{k: row[k] for k in POINT + ["seed", "active_neurons", "best_fvu"]},
                "matching_mlp_width": width,
                "advantage": width / row.active_neurons,
                "bound": bound,
                "advantage_bound": bound_width / row.active_neurons,
            }
        )
    return pd.DataFrame(rows, columns=ADVANTAGE_COLUMNS)


def interval(values: pd.Series, confidence: float) -> tuple[float, float, float]:
    """Geometric mean and the two-sided t-interval at `confidence`, both taken on the log scale (the advantage
    is a ratio: its interval is multiplicative and stays positive); nan bounds for fewer than two values or
    any nan value (an advantage outside the measured MLP widths has no number)."""
    values = values.to_numpy(float)
    if len(values) == 0 or np.isnan(values).any():
        return float("nan"), float("nan"), float("nan")
    logs = np.log(values)
    mean = float(np.exp(logs.mean()))
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = stats.t.ppf((1 + confidence) / 2, len(values) - 1) * logs.std(ddof=1) / math.sqrt(len(values))
    return mean, float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))


def moe_advantage(per_seed_advantage: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """Per MoE point: the advantage's mean over seeds and its t-interval, and the mean matching width."""
    rows = []
    for key, group in per_seed_advantage.groupby(POINT, sort=True):
        mean, low, high = interval(group.advantage, confidence)
        rows.append(
            {
                **dict(zip(POINT, key, strict=True)),
                "active_neurons": group.active_neurons.iloc[0],
                "best_fvu": group.best_fvu.mean(),
                "matching_mlp_width": group.matching_mlp_width.mean(),
                "advantage": mean,
                "advantage_low": low,
                "advantage_high": high,
                "seeds": len(group),
            }
        )
    columns = POINT + [
        "active_neurons",
        "best_fvu",
        "matching_mlp_width",
        "advantage",
        "advantage_low",
        "advantage_high",
        "seeds",
    ]
    return pd.DataFrame(rows, columns=columns)
