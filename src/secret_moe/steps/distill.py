"""Workflow steps of the distillation stage (imports no transformers, to start fast).

`train_students` trains one bundle of runs (same store, seed and epochs: the same batches) in one process
and writes each run's files into the bundle's folder; `collect_run` moves one run's files to its own folder,
which is what the rest of the workflow reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from safetensors.torch import save_file

from secret_moe.batches import ActivationBatches, output_variance
from secret_moe.checkpoint import Checkpoint
from secret_moe.device import resolve_device
from secret_moe.errors import SecretMoeError
from secret_moe.fvu_by_kind import kind_split, router_usage
from secret_moe.layout import RUN_FILES, TIMING_FILE, member_dir, run_name
from secret_moe.memory import keep_freed_memory
from secret_moe.provenance import fingerprint_json, provenance, set_seed, write_json
from secret_moe.rows import KindSplit, read_kinds
from secret_moe.settings import DistillSettings
from secret_moe.store import open_store
from secret_moe.students import active_neurons, build_student, parse_student
from secret_moe.students.data_init import SAMPLE_ROWS, init_from_data, sample_rows
from secret_moe.students.moe import MoEStudent
from secret_moe.train import RowSample, TrainConfig, fit_together

log = logging.getLogger(__name__)


def train_students(
    train_store: str,
    val_store: str,
    bundle_dir: str,
    *,
    runs: list[dict[str, Any]],
    distill: dict[str, Any],
    seed: int,
    device: str,
    threads: int,
    precision: str | None = None,
    on_rung: Callable[[int, list[list[dict[str, Any]]]], None] | None = None,
    checkpoint: str | None = None,
    checkpoint_minutes: float = 0.0,
) -> None:
    """Train every run of one bundle together; each run's files go to `bundle_dir/<student>_lr<lr>/`.
    `distill` holds the settings that decide a run (`settings.distill_params`, recorded in its provenance as given):
    `precision` is among them unless float32; the `precision` argument, where given, is the one the step trains in
    (the rule passes config `distill.precision`, the value `distill` records).
    `on_rung` as for `train.fit_together` (each rung of a budget ladder, as soon as it is done).
    With `checkpoint` (a file path), the training saves its progress there at the end of an epoch at most every
    `checkpoint_minutes` (0: every epoch), continues from it when it was killed before, and deletes it at the end
    (`secret_moe.checkpoint`)."""
    keys = {(r["model"], r["layer"], r["data"], r["epochs"], r["seed"]) for r in runs}
    if len(keys) != 1:
        raise SecretMoeError(f"a bundle trains runs of one store, seed and epochs; got {sorted(keys)}")
    torch.set_num_threads(threads)
    keep_freed_memory()
    device = resolve_device(device)
    run_seed = seed + runs[0]["seed"]
    settings = DistillSettings.from_section(distill if precision is None else {**distill, "precision": precision})
    data = _Data.open(train_store, val_store, runs[0]["layer"], settings, run_seed, device)
    needs_rows = settings.revive != "none" or settings.refit != "none"
    sample = sample_rows(data.train, SAMPLE_ROWS, run_seed) if settings.init == "data" or needs_rows else None
    students = _students(runs, data.train, settings, run_seed, device, sample)
    rows = RowSample(*sample, seed=run_seed) if needs_rows else None  # revival and refit read the same sample
    precision = settings.precision
    recipe = {k: getattr(settings, k) for k in ("optimizer", "lr_scale", "revive", "refit")}
    configs = [TrainConfig(run["epochs"], float(run["lr"]), run_name(run), precision, **recipe) for run in runs]
    log.info("training %d students together: %s", len(runs), ", ".join(c.run_name for c in configs))
    record = provenance({"distill": distill, "seed": seed}, data.fingerprints())
    saved = None
    if checkpoint is not None:
        # what decides the bundle's bytes: its runs, settings, inputs and code, and where and how it runs
        decided = {"runs": runs, "provenance": record, "device": device, "threads": threads}
        saved = Checkpoint(Path(checkpoint), fingerprint_json(decided), checkpoint_minutes)
    schedule = settings.schedule
    results = fit_together(
        students, data.train, data.val, configs, data.variance, data.split, schedule, on_rung, saved, rows
    )
    for run, student, result in zip(runs, students, results, strict=True):
        timing = _timing(result, bundle_dir, len(runs))
        _write_run(member_dir(bundle_dir, run), run, student, result, data, (device, precision, record), timing)
    if saved is not None:
        saved.remove()


def _students(
    runs: list[dict[str, Any]],
    train: ActivationBatches,
    settings: DistillSettings,
    seed: int,
    device: str,
    sample: tuple[torch.Tensor, torch.Tensor] | None,
) -> list[torch.nn.Module]:
    """Each run's student, initialised as it would be alone: uniformly (the authors'), or from `sample`, training
    rows drawn once for all (`distill.init: data`, `students.data_init`)."""
    students = []
    for run in runs:
        set_seed(seed)
        student = build_student(parse_student(run["student"]), train.d_model)
        if settings.init == "data":  # which implies a sample
            init_from_data(student, *sample, seed)
        students.append(student.to(device))
    return students


@dataclass
class _Data:
    """What a bundle reads: training and validation batches, the validation rows by kind (None for Gaussian
    samples: no split by kind), the FVU's denominator, and the stores' groups (for their fingerprints)."""

    train: ActivationBatches
    val: ActivationBatches
    kinds_N: np.ndarray | None
    split: KindSplit | None
    variance: float
    groups: tuple[zarr.Group, zarr.Group]

    @classmethod
    def open(
        cls, train_store: str, val_store: str, layer: int, settings: DistillSettings, seed: int, device: str
    ) -> _Data:
        train_group = open_store(train_store, {"layer": layer})
        val_group = open_store(val_store, {"layer": layer, "model_id": train_group.attrs["model_id"]})
        batches = {
            "shuffle": True,
            "seed": seed,
            "group_chunks": settings.group_chunks,
            "in_memory": settings.in_memory,
            "device": device,
        }
        train = ActivationBatches(train_group, settings.batch_size, **batches)
        val = ActivationBatches(val_group, settings.batch_size, **{**batches, "shuffle": False})
        kinds_N = read_kinds(val_group, val_store)
        split = kind_split(val, kinds_N) if kinds_N is not None else None
        variance = split.variance() if split else output_variance(val)
        return cls(train, val, kinds_N, split, variance, (train_group, val_group))

    def fingerprints(self) -> dict[str, str]:
        """The input stores' fingerprints, as every run's provenance records them."""
        return {
            "train": fingerprint_json(dict(self.groups[0].attrs)),
            "validation": fingerprint_json(dict(self.groups[1].attrs)),
        }


def _write_run(
    out: Path,
    run: dict[str, Any],
    student: torch.nn.Module,
    result: dict[str, Any],
    data: _Data,
    settings: tuple[str, str, dict[str, Any]],
    timing: dict[str, Any],
) -> None:
    """One run's weights, timing and metrics (last), in its folder of the bundle; `settings`: the device, the
    precision and the provenance record."""
    device, precision, record = settings
    out.mkdir(parents=True, exist_ok=True)
    spec = parse_student(run["student"])
    fvus = [h["val_fvu"] for h in result["history"]]
    metrics = {
        **run,
        "spec": spec,
        "active_neurons": active_neurons(spec),
        "parameters": sum(p.numel() for p in student.parameters()),
        "output_variance": data.variance,
        "best_fvu": min(fvus),
        "best_epoch": int(np.argmin(fvus)) + 1,
        "final_fvu": fvus[-1],
        "history": result["history"],
        "rungs": [_rung_summary(rung) for rung in result.get("rungs", [])],
        "by_kind": result["by_kind"][int(np.argmin(fvus))] if data.split else None,
        "router_usage": router_usage(student, data.val, data.kinds_N) if isinstance(student, MoEStudent) else None,
        "train_rows": data.train.rows,
        "val_rows": data.val.rows,
        "device": device,
        "precision": precision,
        "provenance": record,
    }
    save_file({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}, out / RUN_FILES[1])
    write_json(out / TIMING_FILE, timing)
    write_json(out / RUN_FILES[0], metrics)


def _timing(result: dict[str, Any], bundle_dir: str, bundle_size: int) -> dict[str, Any]:
    """Wall-clock numbers and the bundle, kept beside a run's metrics (they differ between identical runs)."""
    return {
        "wall_seconds": result["seconds"],
        "samples_per_second": result["samples_per_second"],
        "bundle": Path(bundle_dir).name,
        "bundle_size": bundle_size,
    }


def _rung_summary(rung: dict[str, Any]) -> dict[str, Any]:
    """One rung of a budget ladder (`schedule.Schedule`): its budget, best and final FVU and its history."""
    fvus = [h["val_fvu"] for h in rung["history"]]
    return {
        "epochs": rung["epochs"],
        "best_fvu": min(fvus),
        "best_epoch": int(np.argmin(fvus)) + 1,
        "final_fvu": fvus[-1],
        "history": rung["history"],
    }
