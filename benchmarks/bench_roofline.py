"""Roofline of one training step: FLOPs and bytes per step against this machine's measured bounds.

For each student (d = 640, batch 1024, as the default trains them), one step = zero_grad + forward + MSE +
backward + Adam step, timed over --steps steps after a warm-up, with --threads torch threads. In the same
run the script measures the machine's two bounds with the same threads: dense float32 matmul GFLOP/s (a
1024 x 640 x 4096 product, the shape of the router's scoring) and memory bandwidth in GB/s (a copy of a
256 MiB tensor: bytes read + written).

FLOPs and bytes come from a model of what a step must do at least, stated in `step_model` (multiply-adds
count 2; bytes count every tensor a kernel must read or write once, float32, and Adam's read and write of
parameter, gradient and both moments). The bound that applies is the one the arithmetic intensity
(FLOPs / bytes) points to; a step below 30% of it gets the top operators of a torch.profiler trace, which
say what holds it back.

A second table times the MoE student's step on today's PyTorch path and on the fused CPU kernels
(`students/fused.py`) side by side at m = 1,024 and 4,096 (s = k = 32): both steps are built in this process,
and --rounds rounds alternate between them (--round-steps steps each), so load from other processes falls on
both alike; it reports medians of wall and CPU (thread) time per step.

    python benchmarks/bench_roofline.py
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from _common import load, machine, save, table
from bench_data_path import step_rate, training_step

D, BATCH = 640, 1024
STUDENTS = {
    "MLP h64": "mlp_h64",
    "MoE m=4096, s=k=32": "moe_lowrank_r128_m4096_s32_k32",
    "MoE m=1e5, s=k=128": "moe_lowrank_r128_m100000_s128_k128",
}


def step_model(spec: dict, d: int = D, batch: int = BATCH) -> tuple[float, float]:
    """(FLOPs, bytes) one training step must at least spend, from the student's shapes (float32 tensors)."""
    params, flops = 0, 0.0
    act_floats = 4 * batch * d  # x read, y read, output written, output gradient written and read
    shared = spec["hidden"] if spec["kind"] == "mlp" else spec["shared"]
    if shared:
        # up and down GEMMs forward; backward: both weight gradients and the hidden gradient (no input grad)
        flops += 10 * batch * d * shared
        params += 2 * d * shared + shared + d
        act_floats += 4 * batch * shared
    if spec["kind"] == "moe":
        m, k = spec["experts"], spec["k"] * spec.get("expert_width", 1)
        r = spec.get("rank", d)  # the full-rank router scores x itself: rank d, no query
        if spec["router"] != "fullrank":
            flops += 2 * batch * d * r * 2  # query forward, and its weight gradient (dense)
            params += d * r
        # dense scores of every key: every expert (the paper's router), or two tables of sqrt(m) half-queries
        keys, width = (2 * math.isqrt(m), r // 2) if spec["router"] == "product_key" else (m, r)
        flops += 2 * batch * width * keys
        flops += 2 * batch * k * r * 2  # backward through the k kept scores: query and gate gradients
        flops += 2 * batch * k * d * 5  # expert dots and sums forward; their weight and gate gradients
        params += keys * width + keys + 2 * m * spec.get("expert_width", 1) * d + m + d
        act_floats += 2 * batch * keys  # the score block written and read by top-k
    bytes_ = 4 * act_floats + 4 * 4 * 2 * params  # Adam: read and write parameter, gradient, two moments
    flops += 10 * params  # Adam's elementwise update
    return flops, bytes_


def machine_bounds(threads: int, device: str = "cpu", dtype: str = "float32", reps: int = 20) -> tuple[float, float]:
    """(matmul GFLOP/s of a 1024 x 640 x 4096 product in `dtype`, copy GB/s of a 256 MiB tensor) on `device`."""
    import torch

    torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    kind = getattr(torch, dtype)
    a, b = torch.randn(1024, 640, device=device, dtype=kind), torch.randn(640, 4096, device=device, dtype=kind)
    for _ in range(3):
        a @ b
    sync()
    tick = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    gflops = 2 * 1024 * 640 * 4096 * reps / (time.perf_counter() - tick) / 1e9
    src = torch.randn(64 * 2**20, device=device)  # 256 MiB
    dst = torch.empty_like(src)
    dst.copy_(src)
    sync()
    tick = time.perf_counter()
    for _ in range(reps // 2):
        dst.copy_(src)
    sync()
    gbs = 2 * src.numel() * 4 * (reps // 2) / (time.perf_counter() - tick) / 1e9
    return gflops, gbs


def time_step(name: str, steps: int, profile: bool) -> tuple[float, str]:
    """Seconds per training step (as `bench_data_path` times it), and with `profile` the top operators."""
    seconds = BATCH / step_rate(name, D, BATCH, steps)
    if not profile:
        return seconds, ""
    from torch.profiler import profile as trace

    step = training_step(name, D, BATCH)
    with trace() as prof:
        for _ in range(2):
            step()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    top = ", ".join(f"{e.key} {e.self_cpu_time_total / total:.0%}" for e in ops[:4])
    return seconds, top


FUSED_STUDENTS = {"m=1024": "moe_lowrank_r128_m1024_s32_k32", "m=4096": "moe_lowrank_r128_m4096_s32_k32"}


def compare_paths(rounds: int, round_steps: int) -> dict[str, dict[bool, tuple[float, float]]]:
    """{label: {fused: (median wall s, median CPU s) per step}}, the two paths alternating round by round."""
    from secret_moe.memory import keep_freed_memory
    from secret_moe.students import fused

    keep_freed_memory()
    if fused.library() is None:
        raise SystemExit("the fused kernels could not be built on this machine")
    results = {}
    for label, name in FUSED_STUDENTS.items():
        steps, wall, cpu = {}, {True: [], False: []}, {True: [], False: []}
        for path in (False, True):
            fused.ENABLED = path
            steps[path] = training_step(name, D, BATCH)
            steps[path]()  # warm-up
        for _ in range(rounds):
            for path in (False, True):
                fused.ENABLED = path
                tick, tock = time.perf_counter(), time.thread_time()
                for _ in range(round_steps):
                    steps[path]()
                cpu[path].append((time.thread_time() - tock) / round_steps)
                wall[path].append((time.perf_counter() - tick) / round_steps)
        fused.ENABLED = True
        results[label] = {p: (statistics.median(wall[p]), statistics.median(cpu[p])) for p in (False, True)}
    return results


def compare_parts(rounds: int) -> list[list[str]]:
    """Median CPU ms of the two parts the fused kernels replace, on each path, alternating: the experts'
    forward + backward on a router's real selection (x needs no gradient, as in training) and the top-k of
    the router's scores (the whole batch's (B, m) scores at once)."""
    import torch

    from secret_moe.students import fused, sparse
    from secret_moe.students.moe import MoEConfig, MoEStudent

    rows = []
    for label, name in FUSED_STUDENTS.items():
        torch.manual_seed(0)
        experts = int(name.split("_m")[1].split("_")[0])
        student = MoEStudent(MoEConfig(d_model=D, shared=32, experts=experts, k=32, router="lowrank"))
        x, grad = torch.randn(BATCH, D), torch.randn(BATCH, D)
        with torch.no_grad():
            query = student.router.key_proj(x)
            scores, pairs = student.router.route(x)
        gates = torch.softmax(scores, -1).requires_grad_()

        def experts_step(student=student, x=x, gates=gates, grad=grad, idx=pairs.idx_BK, m=experts) -> None:
            student.experts_forward(x, gates, sparse.Pairs(idx, m)).backward(grad)

        scores_BM = (query @ student.router.gate.weight.T + student.router.gate.bias).detach()
        values, indices = torch.empty(BATCH, 32), torch.empty(BATCH, 32, dtype=torch.int64)

        def topk_step(scores=scores_BM, values=values, indices=indices) -> None:
            if fused.ENABLED:
                fused.topk(scores, 32, values, indices)
            else:
                sparse.row_topk(scores, 32)

        for part, run in (("experts fwd + bwd", experts_step), ("router top-k", topk_step)):
            cpu = {True: [], False: []}
            for _ in range(rounds):
                for path in (False, True):
                    fused.ENABLED = path
                    tock = time.thread_time()
                    run()
                    run()
                    cpu[path].append((time.thread_time() - tock) / 2)
            fused.ENABLED = True
            today, ours = statistics.median(cpu[False]), statistics.median(cpu[True])
            rows.append([label, part, f"{today * 1e3:.1f}", f"{ours * 1e3:.1f}", f"{today / ours:.2f}x"])
    return rows


def paths_table(threads: int, rounds: int, round_steps: int, gflops_peak: float, gbs_peak: float) -> str:
    from secret_moe.students import parse_student

    rows = []
    for label, timing in compare_paths(rounds, round_steps).items():
        flops, bytes_ = step_model(parse_student(FUSED_STUDENTS[label]))
        bound = max(flops / (gflops_peak * 1e9), bytes_ / (gbs_peak * 1e9))  # seconds the roofline allows
        for path in (False, True):
            wall, cpu = timing[path]
            rows.append(
                [
                    label,
                    "fused" if path else "today (PyTorch)",
                    f"{wall * 1e3:.1f}",
                    f"{cpu * 1e3:.1f}",
                    f"{timing[False][0] / wall:.2f}x" if path else "",
                    f"{timing[False][1] / cpu:.2f}x" if path else "",
                    f"{flops / 1e9:.2f}",
                    f"{bytes_ / 1e6:.0f}",
                    f"{bound * 1e3:.1f}",
                    f"{bound / wall:.0%}",
                ]
            )
    headers = ["MoE s=k=32", "path", "wall ms/step", "CPU ms/step", "wall ratio", "CPU ratio"]
    headers += ["GFLOP/step", "MB/step", "bound ms", "of bound (wall)"]
    return "\n".join(
        [
            f"Today's path vs the fused CPU kernels, d = {D}, batch {BATCH}, {threads} torch thread(s): medians of "
            f"{rounds} alternating rounds of {round_steps} steps (after one warm-up step each)",
            table(headers, rows),
            "bound ms: the step's FLOPs at the matmul bound or its bytes at the copy bandwidth, whichever is longer",
            "",
            f"The parts the fused kernels replace, CPU ms per call (medians of {rounds} alternating rounds):",
            table(["MoE s=k=32", "part", "today CPU ms", "fused CPU ms", "ratio"], compare_parts(rounds)),
        ]
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (config distill.threads)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds of today's path vs fused")
    parser.add_argument("--round-steps", type=int, default=5, help="steps per path per round")
    parser.add_argument("--paths-only", action="store_true", help="only the table of today's path vs fused")
    return parser.parse_args()


def roofline_rows(
    steps: int, paths_only: bool, gflops_peak: float, gbs_peak: float
) -> tuple[list[list[str]], list[str]]:
    """One row per student of `STUDENTS` (none with `paths_only`): its step against the machine's bounds; and a
    note with the top operators of every student far below its bound."""
    from secret_moe.students import parse_student

    balance = gflops_peak / gbs_peak  # FLOP per byte where the two bounds meet
    rows, notes = [], []
    for label, name in {} if paths_only else STUDENTS.items():
        flops, bytes_ = step_model(parse_student(name))
        intensity = flops / bytes_
        seconds, top = time_step(name, steps if "1e5" not in label else max(2, steps // 5), False)
        gflops, gbs = flops / seconds / 1e9, bytes_ / seconds / 1e9
        bound = "compute" if intensity > balance else "memory"
        share = gflops / gflops_peak if bound == "compute" else gbs / gbs_peak
        if share < 0.3:
            _, top = time_step(name, 1, True)
            notes.append(f"- {label}: {share:.0%} of the {bound} bound; self CPU time by operator: {top}")
        rows.append(
            [
                label,
                f"{flops / 1e9:.2f}",
                f"{bytes_ / 1e6:.0f}",
                f"{intensity:.1f}",
                f"{seconds * 1e3:.1f}",
                f"{gflops:.1f}",
                f"{gbs:.2f}",
                bound,
                f"{share:.0%}",
            ]
        )
    return rows, notes


def main() -> None:
    args = parse_args()
    gflops_peak, gbs_peak = machine_bounds(args.threads)
    balance = gflops_peak / gbs_peak  # FLOP per byte where the two bounds meet
    rows, notes = roofline_rows(args.steps, args.paths_only, gflops_peak, gbs_peak)
    text = "\n".join(
        [
            f"Roofline of one training step (fwd + bwd + Adam), d = {D}, batch {BATCH}, {args.threads} torch thread(s)",
            f"machine: {machine()}",
            f"measured bounds, same run: matmul {gflops_peak:.1f} GFLOP/s (1024 x 640 x 4096), "
            f"copy bandwidth {gbs_peak:.1f} GB/s (256 MiB, read + write); balance {balance:.1f} FLOP/byte",
            "",
            *(
                []
                if args.paths_only
                else [
                    table(
                        ["student", "GFLOP/step", "MB/step", "FLOP/byte", "ms/step", "GFLOP/s", "GB/s", "bound"]
                        + ["of bound"],
                        rows,
                    ),
                    "",
                    *notes,
                    "",
                ]
            ),
            paths_table(args.threads, args.rounds, args.round_steps, gflops_peak, gbs_peak),
            "",
            f"machine after the run: {load()}",
        ]
    )
    save(f"bench_roofline_t{args.threads}" + ("_paths" if args.paths_only else ""), text)


if __name__ == "__main__":
    main()
