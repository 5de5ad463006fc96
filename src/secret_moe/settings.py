"""The `distill` settings that decide a run's result, typed (`DistillSettings`) and as its provenance records them
(`distill_params`); a run's epochs, learning rate and seed are part of its path instead."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from secret_moe.errors import ConfigError
from secret_moe.precision import FULL_PRECISION
from secret_moe.schedule import Schedule
from secret_moe.students.data_init import INITS, REFITS
from secret_moe.students.optim import OPTIMIZERS, RateScales
from secret_moe.students.revive import REVIVALS

# The keys of `distill` that decide a run's result (editing the grid, e.g. widths or seeds, must not redo finished
# runs); those of RECIPE_DEFAULTS too, but recorded only where they differ from these values (`distill_params`).
DISTILL_KEYS = ("batch_size", "group_chunks", "in_memory", "schedule")
RECIPE_DEFAULTS = {
    "precision": FULL_PRECISION,
    "init": "uniform",
    "optimizer": "adam",
    "lr_scale": {},
    "revive": "none",
    "refit": "none",
}


@dataclass(frozen=True)
class DistillSettings:
    """What a training job takes from `distill` (defaults: config/schema.yaml; tests/plan/test_settings.py checks
    that they agree)."""

    batch_size: int = 1024
    group_chunks: int = 8
    in_memory: bool = True
    schedule: Schedule = field(default_factory=Schedule)
    precision: str = FULL_PRECISION
    init: str = "uniform"
    optimizer: str = "adam"
    lr_scale: RateScales = field(default_factory=RateScales)
    revive: str = "none"  # students.revive.REVIVALS
    refit: str = "none"  # students.data_init.REFITS

    def __post_init__(self) -> None:
        if self.refit not in REFITS:
            raise ConfigError(f"distill.refit: {self.refit!r} is not one of {', '.join(REFITS)}")
        if self.revive not in REVIVALS:
            raise ConfigError(f"distill.revive: {self.revive!r} is not one of {', '.join(REVIVALS)}")
        if self.revive != "none" and self.schedule.kind != "wsd":
            raise ConfigError("distill.revive: needs distill.schedule.kind wsd (it stops where a cooldown starts)")
        if self.init not in INITS:
            raise ConfigError(f"distill.init: {self.init!r} is not one of {', '.join(INITS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"distill.optimizer: {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")

    @classmethod
    def from_section(cls, distill: Mapping[str, Any]) -> DistillSettings:
        """From a `distill` section, or from the `distill_params` a job gets (no `precision` there: float32); keys
        missing take the defaults, keys of no setting here are ignored."""
        typed = ("schedule", "lr_scale")
        plain = {f.name: distill[f.name] for f in fields(cls) if f.name not in typed and f.name in distill}
        return cls(
            **plain,
            schedule=Schedule(**distill.get("schedule", {})),
            lr_scale=RateScales(**distill.get("lr_scale", {})),
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DistillSettings:
        return cls.from_section(config["distill"])


def distill_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that decide a run, as its provenance records them; those of RECIPE_DEFAULTS (`precision`, `init`,
    `optimizer`, `lr_scale`, `revive`, `refit`) only where they differ from the value every run had before the key
    existed, so those runs stay finished, and any other value retrains.

    Taken from the config as it is, not from DistillSettings: Snakemake compares a job's params by their repr (its
    rerun trigger), so the schedule's keys keep the config's order and its values their YAML types."""
    distill = config["distill"]
    params = {key: distill[key] for key in DISTILL_KEYS}
    for key, before in RECIPE_DEFAULTS.items():
        value = distill.get(key, before)
        if key == "lr_scale":
            value = {part: scale for part, scale in value.items() if scale != 1}
        if value != before:
            params[key] = value
    return params
