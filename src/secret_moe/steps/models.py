"""Steps of rules/models.smk: materialise a teacher's tokenizer and weights, export one layer's MLP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from secret_moe.models.layers import layer_mlp
from secret_moe.models.loading import (
    load_local_model,
    materialise_model,
    materialise_tokenizer,
)
from secret_moe.models.teacher import save_teacher, teacher_from_hf
from secret_moe.provenance import fingerprint_path, provenance


def prepare_tokenizer(spec: dict[str, Any], name: str, out_dir: str, layers: list[int]) -> None:
    materialise_tokenizer(spec, name, out_dir, layers)


def prepare_model(spec: dict[str, Any], name: str, out_dir: str, layers: list[int], seed: int) -> None:
    materialise_model(spec, name, out_dir, layers, seed)


def export_teacher(model_dir: str, out_dir: str, layer: int, model_spec: dict[str, Any]) -> None:
    model = load_local_model(model_dir, "float32", "cpu")
    teacher = teacher_from_hf(layer_mlp(model, layer), model.config)
    save_teacher(
        teacher,
        out_dir,
        provenance(
            {"model": model_spec, "layer": layer}, {"model": fingerprint_path(Path(model_dir) / "model.safetensors")}
        ),
    )
