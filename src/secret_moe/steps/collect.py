"""Rule collect_run (rules/distill.smk): one run's files copied out of the bundle that trained it.

Kept apart from `steps.distill`, whose training imports torch: a config has one collect_run job per run (432 in
a scan of Gemma-3-270M), each a process of its own, and a file copy should not pay seconds of imports.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from secret_moe.errors import SecretMoeError
from secret_moe.layout import RUN_FILES, TIMING_FILE, member_dir, run_name


def collect_run(bundle_dir: str, run: dict[str, Any], out_metrics: str, out_weights: str) -> None:
    """Copy one run's files out of its bundle's folder (which Snakemake deletes once every run is out)."""
    source = member_dir(bundle_dir, run)
    if not (source / RUN_FILES[0]).is_file():
        raise SecretMoeError(f"bundle {bundle_dir} holds no results for run {run_name(run)} (no {source})")
    shutil.copyfile(source / RUN_FILES[1], out_weights)
    shutil.copyfile(source / TIMING_FILE, Path(out_metrics).with_name(TIMING_FILE))
    shutil.copyfile(source / RUN_FILES[0], out_metrics)  # last: its presence marks a complete run
