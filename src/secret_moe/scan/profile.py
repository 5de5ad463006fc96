"""The layer profile of one model: per layer (and MoE student of the main comparison), its row of verdict.csv (the
MoE advantage on real and Gaussian inputs with intervals, what kind of number each is, convergence, the verdict
word), the budget it was trained at, and the statistics of its inputs beside those of their Gaussian twin
(`secret_moe.input_stats`), so that a reader can put the advantage next to how non-Gaussian the inputs are."""

from __future__ import annotations

import pandas as pd

REAL, TWIN = "activations", "gaussian"  # the `data` labels of input_stats.compare_with_twin
# The statistics of input_stats.input_stats, each as a `<name>_real` and a `<name>_gaussian` column.
STATISTICS = (
    "kurtosis_mean",
    "kurtosis_median",
    "participation_ratio",
    "largest_group_rows",
    "largest_group_row_share",
    "largest_group_variance_share",
    "special_share",
    "pad_share",
)
VERDICT_COLUMNS = (
    "student",
    "active_neurons",
    "seeds",
    "advantage_real",
    "real_low",
    "real_high",
    "real_is",
    "advantage_gaussian",
    "gaussian_low",
    "gaussian_high",
    "gaussian_is",
    "converged",
    "convergence",
    "verdict",
)
BUDGET_COLUMNS = ("epochs", "ladder", "rows")
COLUMNS = (
    "model",
    "layer",
    *VERDICT_COLUMNS,
    *BUDGET_COLUMNS,
    *(f"{name}_{side}" for name in STATISTICS for side in ("real", "gaussian")),
)


def _statistics(stats: pd.DataFrame) -> dict[str, object]:
    """One layer's two rows of input statistics (data: activations, gaussian) as `<name>_real`/`<name>_gaussian`."""
    sides = {"real": stats[stats.data == REAL], "gaussian": stats[stats.data == TWIN]}
    row: dict[str, object] = {"rows": int(sides["real"].rows.iloc[0]) if len(sides["real"]) else None}
    for name in STATISTICS:
        for side, part in sides.items():
            row[f"{name}_{side}"] = part[name].iloc[0] if len(part) and name in part else None
    return row


def _budget(ladder: pd.DataFrame, epochs: int) -> dict[str, object]:
    """The training budget of a layer's verdict: the ladder's last rung (and its rungs), else `epochs`."""
    rungs = sorted(set(ladder.epochs)) if len(ladder) else []
    if not rungs:
        return {"epochs": epochs, "ladder": ""}
    return {"epochs": int(rungs[-1]), "ladder": "/".join(str(int(r)) for r in rungs)}


def profile_table(
    verdict: pd.DataFrame, ladder: pd.DataFrame, stats: dict[int, pd.DataFrame], model: str, epochs: int
) -> pd.DataFrame:
    """One row per layer of `stats` (layer -> its input statistics, two rows: real and Gaussian twin) and MoE
    student of `verdict` (verdict.csv; `ladder`: ladder.csv, possibly empty), in the order of COLUMNS.  A layer
    without a verdict row (no MoE advantage was computed) keeps its statistics, with the word `undecided`.
    `epochs`: the budget when there is no ladder (distill.epochs)."""
    mine = verdict[verdict.model == model] if len(verdict) else verdict
    ladder = ladder[ladder.model == model] if len(ladder) else ladder
    rows = []
    for layer in sorted(stats):
        layer_rows = mine[mine.layer == layer] if len(mine) else mine
        layer_ladder = ladder[ladder.layer == layer] if len(ladder) else ladder
        common = {"model": model, "layer": layer, **_statistics(stats[layer])}
        common |= _budget(layer_ladder, epochs)
        if layer_rows.empty:
            rows.append({**common, "verdict": "undecided", "converged": False})
            continue
        for _, row in layer_rows.sort_values("active_neurons").iterrows():
            rows.append({**common, **{key: row.get(key) for key in VERDICT_COLUMNS}})
    return pd.DataFrame(rows, columns=list(COLUMNS))
