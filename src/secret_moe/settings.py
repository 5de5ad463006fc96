"""The `distill` settings that decide a run's result, typed (`DistillSettings`) and as its provenance records them
(`distill_params`); a run's epochs, learning rate and seed are part of its path instead."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from secret_moe.precision import FULL_PRECISION
from secret_moe.schedule import Schedule

# The keys of `distill` that decide a run's result (editing the grid, e.g. widths or seeds, must not redo finished
# runs); `precision` too, but recorded only when it is not float32 (`distill_params`).
DISTILL_KEYS = ("batch_size", "group_chunks", "in_memory", "schedule")


@dataclass(frozen=True)
class DistillSettings:
    """What a training job takes from `distill` (defaults: config/schema.yaml; tests/plan/test_settings.py checks
    that they agree)."""

    batch_size: int = 1024
    group_chunks: int = 8
    in_memory: bool = True
    schedule: Schedule = field(default_factory=Schedule)
    precision: str = FULL_PRECISION

    @classmethod
    def from_section(cls, distill: Mapping[str, Any]) -> DistillSettings:
        """From a `distill` section, or from the `distill_params` a job gets (no `precision` there: float32); keys
        missing take the defaults, keys of no setting here are ignored."""
        plain = {f.name: distill[f.name] for f in fields(cls) if f.name != "schedule" and f.name in distill}
        return cls(**plain, schedule=Schedule(**distill.get("schedule", {})))

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DistillSettings:
        return cls.from_section(config["distill"])


def distill_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that decide a run, as its provenance records them; `precision` only when it is not float32, so
    the runs trained before the key existed (all float32) stay finished, and any other precision retrains.

    Taken from the config as it is, not from DistillSettings: Snakemake compares a job's params by their repr (its
    rerun trigger), so the schedule's keys keep the config's order and its values their YAML types."""
    distill = config["distill"]
    params = {key: distill[key] for key in DISTILL_KEYS}
    if distill["precision"] != FULL_PRECISION:
        params["precision"] = distill["precision"]
    return params
