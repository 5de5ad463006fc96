"""Seeds, fingerprints and the provenance record every artifact carries."""

from __future__ import annotations

import hashlib
import json
import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from secret_moe import __version__


def set_seed(seed: int) -> None:
    """Seed every random number generator the package uses."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fingerprint_text(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint_json(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable object (key order does not matter)."""
    return fingerprint_text(json.dumps(obj, sort_keys=True, default=str))


def fingerprint_path(path: str | Path) -> str:
    """Short sha256 of a file, or of every file under a directory (names and bytes)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def provenance(config: dict[str, Any], inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """The record stored next to (or inside) every artifact."""
    return {
        "package": "secret-moe",
        "package_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "config": config,
        "inputs": inputs or {},
    }


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON atomically, so an interrupted job never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())
