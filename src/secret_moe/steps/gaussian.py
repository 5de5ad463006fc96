"""Steps of rules/gaussian.smk: the Gaussian control's moments and sampled stores."""

from __future__ import annotations

import logging

import numpy as np

from secret_moe.device import resolve_device
from secret_moe.gaussian import fit_moments, write_gaussian_store
from secret_moe.models.teacher import load_teacher
from secret_moe.provenance import fingerprint_path
from secret_moe.rows import sample_attrs
from secret_moe.store import open_store

log = logging.getLogger(__name__)


def fit_gaussian(store: str, out: str, block_rows: int) -> None:
    group = open_store(store)
    mean, cov, rows = fit_moments(group["x"], block_rows)
    np.savez(out, mean=mean, cov=cov, rows=rows)
    log.info("fitted N(mean, cov) on %d rows: mean input variance %.4f", rows, np.trace(cov) / len(mean))


def sample_gaussian(moments: str, teacher_dir: str, like: str, out: str, *, seed: int, split: str, device: str) -> None:
    fitted = np.load(moments)
    real = open_store(like, checksums=False)  # its attributes and shape only
    device = resolve_device(device)
    # the sampling seed too: a seed's own draw (gaussian.draw_per_seed) differs from another only by it, and every
    # run records its stores' attributes
    attrs = {
        **sample_attrs(dict(real.attrs)),
        "data": "gaussian",
        "split": split,
        "moments": fingerprint_path(moments),
        "seed": seed,
    }
    write_gaussian_store(
        out,
        mean=fitted["mean"],
        cov=fitted["cov"],
        teacher=load_teacher(teacher_dir, device),
        rows=real["x"].shape[0],
        chunk_rows=real["x"].chunks[0],
        seed=seed,
        device=device,
        attrs=attrs,
    )
