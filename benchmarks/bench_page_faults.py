"""What `secret_moe.memory.keep_freed_memory` saves: one training step with glibc's default malloc settings
and with freed memory kept in the heap, side by side.

For each student (d = 640, batch 1024, one torch thread, as the distillation jobs run), two fresh worker
processes, one per setting, each time --steps steps after two warm-up steps and report wall ms, CPU ms,
system ms and minor page faults per step.  The pairs run alternately --rounds times, and the table gives the
median of each column over the rounds.

    python benchmarks/bench_page_faults.py
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

from _common import machine, run_worker, save, table
from bench_data_path import training_step

D, BATCH = 640, 1024
STUDENTS = ("mlp_h64", "moe_lowrank_r128_m4096_s32_k32")
SETTINGS = ("glibc default", "keep_freed_memory")


def worker(student: str, setting: str, steps: int) -> None:
    import torch

    from secret_moe.memory import keep_freed_memory

    if setting == SETTINGS[1]:
        assert keep_freed_memory()
    torch.set_num_threads(1)
    step = training_step(student, D, BATCH)
    step()
    step()
    before, tick = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    wall, after = time.perf_counter() - tick, resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(
        json.dumps(
            {
                "wall_ms": 1e3 * wall / steps,
                "cpu_ms": 1e3 * cpu / steps,
                "sys_ms": 1e3 * (after.ru_stime - before.ru_stime) / steps,
                "faults": (after.ru_minflt - before.ru_minflt) / steps,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=2, metavar=("STUDENT", "SETTING"), help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker, args.steps)
        return
    results: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.rounds):
        for student in STUDENTS:
            for setting in SETTINGS:
                out = run_worker(__file__, [student, setting, "--steps", str(args.steps)])
                if "error" in out:
                    raise SystemExit(f"{student} / {setting}: {out['error']}")
                results.setdefault((student, setting), []).append(out)
    rows = []
    for student in STUDENTS:
        wall = {}
        for setting in SETTINGS:
            median = {
                key: statistics.median(r[key] for r in results[(student, setting)])
                for key in results[(student, setting)][0]
            }
            wall[setting] = median["wall_ms"]
            rows.append(
                [
                    student,
                    setting,
                    f"{median['wall_ms']:.1f}",
                    f"{median['cpu_ms']:.1f}",
                    f"{median['sys_ms']:.1f}",
                    f"{median['faults']:.0f}",
                ]
            )
        rows[-1].append(f"{wall[SETTINGS[0]] / wall[SETTINGS[1]]:.2f}x")
        rows[-2].append("")
    text = "\n".join(
        [
            f"One training step (fwd + bwd + Adam), d = {D}, batch {BATCH}, 1 torch thread: glibc's default malloc "
            f"vs keep_freed_memory; median of {args.rounds} alternating rounds of {args.steps} steps after 2 warm-up",
            f"machine: {machine()}",
            "",
            table(
                ["student", "malloc", "wall ms/step", "CPU ms/step", "system ms/step", "page faults/step", "speed-up"],
                rows,
            ),
        ]
    )
    save("bench_page_faults", text)


if __name__ == "__main__":
    main()
