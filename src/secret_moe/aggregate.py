"""The results table: one row per distillation run, and the paper's per-point best over learning rates."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from secret_moe.errors import SecretMoeError

POINT = ["model", "layer", "data", "student"]
_SPEC_COLUMNS = ["kind", "router", "rank", "experts", "shared", "k", "expert_width"]


def runs_table(metrics: list[dict[str, Any]], families: dict[tuple[str, int, str], list[str]]) -> pd.DataFrame:
    """Tidy table of runs; `families` maps (model, layer, student) to the experiment families listing it."""
    rows = []
    for m in metrics:
        bad = [h["epoch"] for h in m["history"] if not math.isfinite(h["val_fvu"])]
        if bad or not math.isfinite(m["best_fvu"]):
            raise SecretMoeError(
                f"run {m['model']}/{m['layer']}/{m['data']}/{m['student']}/lr{m['lr']}/seed{m['seed']} "
                f"has a non-finite FVU (epochs {bad}); delete its metrics.json and rerun it"
            )
        row = {
            key: m[key]
            for key in [
                "model",
                "layer",
                "data",
                "student",
                "lr",
                "seed",
                "active_neurons",
                "best_fvu",
                "best_epoch",
                "final_fvu",
                "output_variance",
                "parameters",
                "wall_seconds",
                "samples_per_second",
            ]
        }
        row.update({key: m["spec"].get(key) for key in _SPEC_COLUMNS})
        row["families"] = ";".join(families.get((m["model"], m["layer"], m["student"]), []))
        rows.append(row)
    return pd.DataFrame(rows).sort_values(POINT + ["lr", "seed"], ignore_index=True)


def best_over_lr(runs: pd.DataFrame) -> pd.DataFrame:
    """Per point: min over learning rates of the (seed-averaged) min over epochs, as in the paper."""
    by_lr = runs.groupby(POINT + ["lr"], as_index=False).agg(
        best_fvu=("best_fvu", "mean"), final_fvu=("final_fvu", "mean"), seeds=("seed", "nunique")
    )
    best = by_lr.loc[by_lr.groupby(POINT)["best_fvu"].idxmin()].rename(columns={"lr": "best_lr"})
    spec = runs.drop_duplicates(POINT)[POINT + _SPEC_COLUMNS + ["active_neurons", "families"]]
    return best.merge(spec, on=POINT).sort_values(POINT, ignore_index=True)


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


def moe_advantage(best: pd.DataFrame) -> pd.DataFrame:
    """For each MoE point with s = k (main comparison and layer sweep): the MLP width matching its FVU,
    and the ratio of that width to the MoE's active neurons."""
    moe = best[(best.kind == "moe") & best.families.str.contains("main|layer_sweep")]
    rows = []
    for _, row in moe.iterrows():
        width = mlp_width_to_match(best, row.best_fvu, row.model, row.layer, row.data)
        rows.append(
            {
                **{k: row[k] for k in POINT + ["active_neurons", "best_fvu"]},
                "matching_mlp_width": width,
                "advantage": width / row.active_neurons,
            }
        )
    return pd.DataFrame(rows, columns=POINT + ["active_neurons", "best_fvu", "matching_mlp_width", "advantage"])
