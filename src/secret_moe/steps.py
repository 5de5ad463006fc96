"""One function per workflow rule: read inputs, call the science modules, write outputs with provenance.

Rule scripts in `scripts/` are thin wrappers that pass Snakemake's named inputs, outputs and params here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from secret_moe import __version__
from secret_moe.corpus import load_lines
from secret_moe.extract import capture_activations
from secret_moe.gaussian import fit_moments, write_gaussian_store
from secret_moe.models.layers import check_layers, hidden_size, layer_mlp
from secret_moe.models.loading import (
    load_local_config,
    load_local_model,
    load_local_tokenizer,
    materialise_model,
    resolve_device,
)
from secret_moe.models.teacher import load_teacher, save_teacher, teacher_from_hf
from secret_moe.provenance import fingerprint_json, fingerprint_path, provenance, read_json, set_seed, write_json
from secret_moe.store import open_store
from secret_moe.tokenise import corpus_fingerprint, read_token_store, tokenise_lines, write_token_store

log = logging.getLogger(__name__)


def prepare_model(spec: dict[str, Any], name: str, out_dir: str, seed: int) -> None:
    materialise_model(spec, name, out_dir, seed)


def tokenise_corpus(model_dir: str, outputs: dict[str, str], corpus: dict[str, Any], seed: int) -> None:
    tokenizer = load_local_tokenizer(model_dir)
    lines = load_lines(corpus, seed)
    for split, out in outputs.items():
        sequences, stats = tokenise_lines(
            lines[split], tokenizer, min_tokens=corpus["min_tokens"], max_length=corpus["max_length"],
            max_lines=corpus["validation_lines"] if split == "validation" else None,
            max_tokens=corpus["max_tokens"].get(split), seed=seed, split=split,
        )
        attrs = {"split": split, "corpus_fingerprint": corpus_fingerprint(lines[split]),
                 "tokenizer": type(tokenizer).__name__, **stats, **provenance(corpus)}
        write_token_store(out, sequences, attrs)


def export_teacher(model_dir: str, out_dir: str, layer: int, model_spec: dict[str, Any]) -> None:
    model = load_local_model(model_dir, "float32", "cpu")
    teacher = teacher_from_hf(layer_mlp(model, layer), model.config)
    save_teacher(teacher, out_dir, provenance({"model": model_spec, "layer": layer},
                                              {"model": fingerprint_path(Path(model_dir) / "model.safetensors")}))


def store_identity(model_spec: dict[str, Any], layer: int, token_attrs: dict[str, Any]) -> dict[str, Any]:
    """Store attributes that must match between a partial store, the config and later readers."""
    return {
        "model_id": model_spec.get("hf_id", model_spec.get("path")),
        "model_source": model_spec["source"],
        "model_init": model_spec.get("init", "pretrained"),
        "revision": model_spec.get("revision"),
        "layer": layer,
        "corpus_fingerprint": token_attrs["corpus_fingerprint"],
        "tokens": token_attrs["tokens"],
    }


def extract_activations(
    model_dir: str, tokens: str, out: str, *, layer: int, model_spec: dict[str, Any], extract: dict[str, Any],
    seed: int, device: str,
) -> None:
    sequences, token_attrs = read_token_store(tokens)
    config = load_local_config(model_dir)
    check_layers(config, [layer], Path(model_dir).name)
    device = resolve_device(device)
    model = load_local_model(model_dir, model_spec.get("dtype", "float32"), device)
    attrs = {**store_identity(model_spec, layer, token_attrs), "split": token_attrs["split"],
             "d_model": hidden_size(config), "dtype": "float32", "compute_dtype": model_spec.get("dtype", "float32"),
             "package_version": __version__, "extract_config": extract, "seed": seed}
    tick = time.perf_counter()
    stats = capture_activations(
        model, sequences, out, layer=layer, pad_id=_pad_id(model_dir), batch_tokens=extract["batch_tokens"],
        window_sequences=extract["window_sequences"], chunk_mb=extract["chunk_mb"], seed=seed, device=device,
        attrs=attrs,
    )
    stats["seconds"] = time.perf_counter() - tick
    log.info("extraction stats: %s", stats)
    write_json(Path(out) / "extract_stats.json", stats)


def _pad_id(model_dir: str) -> int:
    tokenizer = load_local_tokenizer(model_dir)
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def fit_gaussian(store: str, out: str, block_rows: int) -> None:
    group = open_store(store)
    mean, cov, rows = fit_moments(group["x"], block_rows)
    np.savez(out, mean=mean, cov=cov, rows=rows)
    log.info("fitted N(mean, cov) on %d rows: mean input variance %.4f", rows, np.trace(cov) / len(mean))


def sample_gaussian(moments: str, teacher_dir: str, like: str, out: str, *, seed: int, split: str, device: str) -> None:
    fitted = np.load(moments)
    real = open_store(like)
    device = resolve_device(device)
    attrs = {**dict(real.attrs), "data": "gaussian", "split": split, "moments": fingerprint_path(moments)}
    write_gaussian_store(
        out, mean=fitted["mean"], cov=fitted["cov"], teacher=load_teacher(teacher_dir, device),
        rows=real["x"].shape[0], chunk_rows=real["x"].chunks[0], seed=seed + (split == "validation"), device=device,
        attrs=attrs,
    )


def train_student(
    train_store: str, val_store: str, out_metrics: str, out_weights: str, *, run: dict[str, Any],
    distill: dict[str, Any], seed: int, device: str, threads: int,
) -> None:
    from safetensors.torch import save_file

    from secret_moe.data import ActivationBatches, output_variance
    from secret_moe.students import active_neurons, build_student, parse_student
    from secret_moe.train import TrainConfig, fit

    torch.set_num_threads(threads)
    device = resolve_device(device)
    run_seed = seed + run["seed"]
    set_seed(run_seed)
    train_group, val_group = open_store(train_store), open_store(val_store)
    batches = {"shuffle": True, "seed": run_seed, "group_chunks": distill["group_chunks"],
               "in_memory": distill["in_memory"], "device": device}
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
        **run, "spec": spec, "active_neurons": active_neurons(spec),
        "parameters": sum(p.numel() for p in student.parameters()), "output_variance": variance,
        "best_fvu": min(fvus), "best_epoch": int(np.argmin(fvus)) + 1, "final_fvu": fvus[-1],
        "wall_seconds": time.perf_counter() - tick, "train_rows": train.rows, "val_rows": val.rows,
        "device": device, **result,
        "provenance": provenance({"distill": distill, "seed": seed},
                                 {"train": fingerprint_json(dict(train_group.attrs)),
                                  "validation": fingerprint_json(dict(val_group.attrs))}),
    }
    save_file({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}, out_weights)
    write_json(out_metrics, metrics)


def read_metrics(paths: list[str]) -> list[dict[str, Any]]:
    return [read_json(p) for p in paths]


def aggregate_runs(
    metric_paths: list[str], families: dict[str, dict[str, list[str]]], *, runs: str, best: str, curves: str,
    advantage: str,
) -> None:
    import pandas as pd

    from secret_moe.aggregate import best_over_lr, moe_advantage, runs_table

    metrics = read_metrics(metric_paths)
    membership: dict[tuple[str, str], list[str]] = {}
    for model, by_family in families.items():
        for family, students in by_family.items():
            for student in students:
                membership.setdefault((model, student), []).append(family)
    table = runs_table(metrics, membership)
    best_table = best_over_lr(table)
    table.to_csv(runs, index=False)
    best_table.to_csv(best, index=False)
    moe_advantage(best_table).to_csv(advantage, index=False)
    pd.DataFrame([{**{k: m[k] for k in ("model", "layer", "data", "student", "lr", "seed")}, **h}
                  for m in metrics for h in m["history"]]).to_csv(curves, index=False)
    log.info("aggregated %d runs into %d points", len(table), len(best_table))


def plot_figure(
    figure: str, best_csv: str, curves_csv: str, paper_csv: str, *, model: str, layer: int, hf_id: str | None,
    pdf: str, png: str,
) -> None:
    import pandas as pd

    from secret_moe import figures

    best = pd.read_csv(best_csv, keep_default_na=False, na_values=[""])
    best = best[(best.model == model) & (best.layer == layer)]
    title = f"{model} layer {layer}"
    if figure == "learning_curves":
        curves = pd.read_csv(curves_csv)
        figures.learning_curves(curves[(curves.model == model) & (curves.layer == layer)], title, pdf, png)
    elif figure == "paper_comparison":
        paper = pd.read_csv(paper_csv)
        paper = paper[(paper.model == hf_id) & (paper.layer == layer) & paper.in_notebook_figure]
        figures.paper_comparison(best, paper, f"{title} vs paper ({hf_id})", pdf, png)
    else:
        getattr(figures, figure)(best, title, pdf, png)
