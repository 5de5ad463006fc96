"""Workflow step of the distillation stage: train one student (imports no transformers, to start fast)."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from secret_moe.data import ActivationBatches, output_variance
from secret_moe.device import resolve_device
from secret_moe.provenance import fingerprint_json, provenance, set_seed, write_json
from secret_moe.store import open_store
from secret_moe.students import active_neurons, build_student, parse_student
from secret_moe.train import TrainConfig, fit

log = logging.getLogger(__name__)


def train_student(
    train_store: str,
    val_store: str,
    out_metrics: str,
    out_weights: str,
    *,
    run: dict[str, Any],
    distill: dict[str, Any],
    seed: int,
    device: str,
    threads: int,
) -> None:
    torch.set_num_threads(threads)
    device = resolve_device(device)
    run_seed = seed + run["seed"]
    set_seed(run_seed)
    train_group = open_store(train_store, {"layer": run["layer"]})
    val_group = open_store(val_store, {"layer": run["layer"], "model_id": train_group.attrs["model_id"]})
    batches = {
        "shuffle": True,
        "seed": run_seed,
        "group_chunks": distill["group_chunks"],
        "in_memory": distill["in_memory"],
        "device": device,
    }
    train = ActivationBatches(train_group, distill["batch_size"], **batches)
    val = ActivationBatches(val_group, distill["batch_size"], **{**batches, "shuffle": False})
    spec = parse_student(run["student"])
    student = build_student(spec, train.d_model).to(device)
    name = "/".join(str(run[k]) for k in ("model", "layer", "data", "student", "lr", "seed"))
    variance = output_variance(val)
    tick = time.perf_counter()
    result = fit(student, train, val, TrainConfig(distill["epochs"], float(run["lr"]), name), variance)
    fvus = [h["val_fvu"] for h in result["history"]]
    metrics = {
        **run,
        "spec": spec,
        "active_neurons": active_neurons(spec),
        "parameters": sum(p.numel() for p in student.parameters()),
        "output_variance": variance,
        "best_fvu": min(fvus),
        "best_epoch": int(np.argmin(fvus)) + 1,
        "final_fvu": fvus[-1],
        "wall_seconds": time.perf_counter() - tick,
        "train_rows": train.rows,
        "val_rows": val.rows,
        "device": device,
        **result,
        "provenance": provenance(
            {"distill": distill, "seed": seed},
            {"train": fingerprint_json(dict(train_group.attrs)), "validation": fingerprint_json(dict(val_group.attrs))},
        ),
    }
    save_file({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}, out_weights)
    write_json(out_metrics, metrics)
