"""The CPU that Snakemake's own scheduling loop takes while jobs wait for cores, as Snakemake ships and with
`secret_moe.scheduler_timer` (which `rules/common.smk` applies), side by side, alternating, on the same workflow of
sleeping jobs.

With a job-rate limiter (always set by Snakemake's command line) every finished job starts one more chain of
wake-ups of the loop, one per timespan (1 s), so the loop's CPU grows with the number of finished jobs
(the module's docstring says why). The jobs here sleep, so the CPU the run takes (`RUSAGE_CHILDREN`) is Snakemake's.
The most timers the main process held at once are counted by a thread of the workflow's own.

    python benchmarks/bench_scheduler_loop.py --jobs 240 --sleep 1 --repeats 1   # the committed table
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import load, save, table

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = """
import sys, threading, time
{fix}
PEAK = [0]

def count_timers():  # the most timers waiting at once in this (the main Snakemake) process
    while True:
        PEAK[0] = max(PEAK[0], sum(isinstance(t, threading.Timer) for t in threading.enumerate()))
        time.sleep(0.25)

threading.Thread(target=count_timers, daemon=True).start()

onsuccess:
    open("timers.txt", "w").write(str(PEAK[0]))

rule all:
    input: expand("out/{{i}}.txt", i=range({jobs}))

rule sleeper:
    input: "in.txt"
    output: "out/{{i}}.txt"
    shell: "sleep {sleep}; touch {{output}}"
"""


FIX = f"sys.path.insert(0, {str(REPO / 'src')!r})\nfrom secret_moe.scheduler_timer import one_reevaluation_timer\n"
WAYS = {"as Snakemake ships": "", "secret_moe.scheduler_timer": FIX + "one_reevaluation_timer()"}


def one_run(folder: Path, fix: str, jobs: int, sleep: float) -> dict:
    """Run the sleeping workflow once in a fresh folder; the CPU its Snakemake process tree took."""
    folder.mkdir()
    (folder / "Snakefile").write_text(SNAKEFILE.format(fix=fix, jobs=jobs, sleep=sleep))
    (folder / "in.txt").write_text("x\n")
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--quiet", "all", "--workflow-profile", "none"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=folder, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "timers": int((folder / "timers.txt").read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=60, help="sleeping jobs in the workflow")
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds each job sleeps")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in WAYS}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for i, (name, fix) in enumerate(WAYS.items()):
                results[name].append(one_run(Path(tmp) / f"r{repeat}_{i}", fix, args.jobs, args.sleep))
    rows, base = [], None
    for name, runs in results.items():
        cpu = min(r["cpu"] for r in runs)
        wall = min(r["wall"] for r in runs)
        base = base or cpu
        timers = max(r["timers"] for r in runs)
        rows.append([name, f"{cpu:.1f}", f"{wall:.1f}", f"{cpu / wall:.2f}", timers, f"{base / cpu:.1f}x"])
    text = (
        f"Snakemake's scheduling loop: {args.jobs} jobs sleeping {args.sleep} s each on --cores 2, "
        f"best of {args.repeats} alternating runs\n"
        + table(["scheduler", "CPU s", "wall s", "cores busy", "most timers at once", "CPU ratio"], rows)
        + f"\n{load()}"
    )
    save("bench_scheduler_loop", text)


if __name__ == "__main__":
    main()
