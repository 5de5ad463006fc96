"""The start-up of a collect_run job: its script's imports with `collect_run` in `steps.collect` (a file copy and
the layout) against the imports it paid while it lived in `steps.distill` (torch, the students, the training),
side by side, alternating, in fresh processes, each followed by the same copy of one run's files (Snakemake's
own start of a script job, the same for both, is not in it).

A config has one collect_run job per run (432 in `secret-moe scan gemma3-270m`), each a process of its own, so
this cost is paid hundreds of times per run of the workflow.

    python benchmarks/bench_collect_run.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine, save, table

REPO = Path(__file__).resolve().parents[1]
# what the rule's script imports, then the copy; `before` also imports the module collect_run used to live in
JOB = """
import sys
{extra}from secret_moe.logs import log_to
from secret_moe.steps.collect import collect_run
run = {{"student": "mlp_h8", "lr": 0.001}}
collect_run(sys.argv[1], run, sys.argv[2] + "/metrics.json", sys.argv[2] + "/weights.safetensors")
"""
WAYS = {"steps.collect (now)": "", "steps.distill (before)": "import secret_moe.steps.distill\n"}


def bundle(folder: Path) -> Path:
    """A bundle folder holding one run's three files, as train_students leaves them."""
    from secret_moe.layout import RUN_FILES, TIMING_FILE, member_dir

    member = member_dir(folder / "bundle", {"student": "mlp_h8", "lr": 0.001})
    member.mkdir(parents=True)
    for name in (*RUN_FILES, TIMING_FILE):
        (member / name).write_bytes(os.urandom(4096))
    return folder / "bundle"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="processes of each way, alternating")
    parser.add_argument("--name", default="bench_collect_run", help="results file: benchmarks/results/NAME.txt")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory() as tmp:
        source = bundle(Path(tmp))
        for i in range(args.repeats):
            for way, extra in WAYS.items():
                out = Path(tmp) / f"out{i}{len(extra)}"
                out.mkdir()
                tick = time.perf_counter()
                subprocess.run([sys.executable, "-c", JOB.format(extra=extra), source, out], env=env, check=True)
                seconds[way].append(time.perf_counter() - tick)
                assert (out / "metrics.json").read_bytes() == (source / "mlp_h8_lr0.001" / "metrics.json").read_bytes()
    now, before = (statistics.median(seconds[way]) for way in WAYS)
    rows = [[way, f"{statistics.median(s):.2f}", f"{min(s):.2f}", f"{max(s):.2f}"] for way, s in seconds.items()]
    text = "\n".join(
        [
            f"collect_run job start-up and copy, {args.repeats} fresh processes each, alternating; {machine()}",
            table(["module", "median s", "min s", "max s"], rows),
            f"ratio before / now (medians): {before / now:.1f}x; "
            f"saved over 432 jobs of a Gemma scan: {432 * (before - now) / 60:.1f} CPU-minutes",
        ]
    )
    save(args.name, text)


if __name__ == "__main__":
    main()
