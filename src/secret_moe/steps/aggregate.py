"""Step of rules/aggregate.smk: gather every run into the results tables."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from secret_moe.aggregate import (
    advantage_per_seed,
    best_over_lr,
    best_per_seed,
    fvu_by_kind_table,
    learning_rate_choice,
    moe_advantage,
    runs_table,
)
from secret_moe.layout import RUN_KEYS, TIMING_FILE
from secret_moe.provenance import read_json
from secret_moe.remaining import envelope
from secret_moe.verdict import budget_check_table, final_rung, ladder_table, verdict_table

log = logging.getLogger(__name__)


def read_metrics(paths: list[str]) -> list[dict[str, Any]]:
    """Each run's metrics.json, with its timing.json (if present) under "timing"."""
    metrics = []
    for path in paths:
        timing = Path(path).with_name(TIMING_FILE)
        metrics.append({**read_json(path), "timing": read_json(timing) if timing.is_file() else {}})
    return metrics


def aggregate_runs(
    metric_paths: list[str],
    families: list[tuple[str, int, dict[str, list[str]]]],
    *,
    epochs: int,
    budget_check: dict[str, Any] | None,
    confidence: float,
    out: dict[str, str],
    ladder: list[int] | None = None,
) -> None:
    """Write the results tables (`out` maps each table's name to its path): runs, best, best_by_seed,
    curves, moe_advantage, advantage_by_seed, budget_check, verdict, ladder, fvu_by_kind and learning_rates
    (docs/artifacts.md; captions in report/).

    With a budget `ladder` (its budgets, shortest first; the last is `epochs`) the budget check compares the
    last two rungs of every seed instead of runs at `budget_check.factor` times the epochs, and `ladder` holds
    the verdict at every rung; `advantage_by_seed` (and `moe_advantage`) then reads each FVU as the verdict does,
    the best over the rungs (`remaining.envelope`)."""
    metrics = read_metrics(metric_paths)
    membership: dict[tuple[str, int, str], list[str]] = {}
    for model, layer, by_family in families:
        for family, students in by_family.items():
            for student in students:
                membership.setdefault((model, layer, student), []).append(family)
    runs = runs_table(metrics, membership)
    per_seed = best_per_seed(runs, epochs)
    by_seed_advantage = advantage_per_seed(per_seed)
    check, ladder_verdicts = None, pd.DataFrame()
    seeds = sorted(runs.seed.unique()) if len(runs) else []
    tolerance = budget_check["tolerance"] if budget_check else None
    verdict = None
    if budget_check and ladder:
        check = budget_check_table(runs, ladder[-2], 2, seeds, tolerance)
        ladder_verdicts = ladder_table(runs, ladder, seeds, confidence, tolerance)
        verdict = final_rung(ladder_verdicts, ladder[-1])
        by_seed_advantage = advantage_per_seed(envelope(runs, ladder))  # the per-seed advantages the verdict reads
    elif budget_check:
        check = budget_check_table(runs, epochs, budget_check["factor"], budget_check["seeds"], tolerance)
    if verdict is None:
        verdict = verdict_table(by_seed_advantage, check, confidence, tolerance)
    tables = {
        "runs": runs,
        "best": best_over_lr(runs, epochs),
        "best_by_seed": per_seed,
        "curves": pd.DataFrame([{**{k: m[k] for k in RUN_KEYS}, **h} for m in metrics for h in m["history"]]),
        "moe_advantage": moe_advantage(by_seed_advantage, confidence),
        "advantage_by_seed": by_seed_advantage,
        "budget_check": check if check is not None else pd.DataFrame(),
        "verdict": verdict,
        "ladder": ladder_verdicts,
        "fvu_by_kind": fvu_by_kind_table(metrics, membership),
        "learning_rates": learning_rate_choice(runs, ladder or [epochs]),
    }
    for name, table in tables.items():
        table.to_csv(out[name], index=False)
    log.info("aggregated %d runs into %d points", len(runs), len(tables["best"]))
