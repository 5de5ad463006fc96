"""Steps of rules/scan.smk: a layer's input statistics beside its Gaussian twin's, and a model's layer profile."""

from __future__ import annotations

import logging

import pandas as pd

from secret_moe.input_stats import compare_with_twin
from secret_moe.scan.profile import profile_table
from secret_moe.store import open_store

log = logging.getLogger(__name__)


def describe_inputs(real: str, twin: str, out: str, *, projections: int, block_rows: int, seed: int) -> None:
    """One row each for the real train store and its Gaussian twin (input_stats.compare_with_twin)."""
    rows = compare_with_twin(
        open_store(real), open_store(twin), projections=projections, seed=seed, block_rows=block_rows
    )
    pd.DataFrame(rows).to_csv(out, index=False)


def read_table(csv: str) -> pd.DataFrame:
    """A results table; an empty one (aggregate_runs writes ladder.csv without columns when there is no ladder)
    as an empty DataFrame."""
    try:
        return pd.read_csv(csv, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def profile_layers(
    verdict_csv: str, ladder_csv: str, stats_csvs: list[str], *, model: str, layers: list[int], epochs: int, out: str
) -> None:
    """The profile of `model` over `layers` (scan.profile.profile_table); `stats_csvs` in the order of `layers`."""
    stats = {layer: pd.read_csv(csv) for layer, csv in zip(layers, stats_csvs, strict=True)}
    table = profile_table(read_table(verdict_csv), read_table(ladder_csv), stats, model, epochs)
    table.to_csv(out, index=False)
    log.info("profile of %s over %d layers: verdicts %s", model, len(layers), dict(table.verdict.value_counts()))
