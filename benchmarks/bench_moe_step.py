"""Training-step throughput of the MoE student: the paper's formulation vs ours, side by side.

One step = zero_grad + forward + MSE + backward + Adam step on a batch of random inputs.
(a) `baseline`: `PaperStudent` (students/baseline.py, the authors' formulation) with `torch.optim.Adam`;
(b) `ours`: `MoEStudent` with the same low-rank router and `make_optimizer` (fused Adam), as trained.
Each (config, implementation) runs in its own process so its peak RSS (getrusage maxrss) is its own;
`mem` is the peak over the RSS measured just before the model was built (params, grads, Adam state and
activations).  On CUDA, memory is torch.cuda.max_memory_allocated.  One warm-up step is not timed.
`--precisions float32 bfloat16` also times ours under each further `distill.precision` (autocast), in the
worker right after ours in float32: what mixed precision costs or saves on this machine, side by side.

    python benchmarks/bench_moe_step.py            # full grid (d 640/1024, m 1e4/1e5, s = k 16/128/512)
    python benchmarks/bench_moe_step.py --quick    # d = 640, m 1e4/1e5, k = 128
    python benchmarks/bench_moe_step.py --quick --precisions float32 bfloat16
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from _common import machine, maxrss_mib, run_worker, save, table


def worker(args: argparse.Namespace) -> None:
    import torch

    from secret_moe.precision import MixedPrecision
    from secret_moe.students.baseline import PaperStudent
    from secret_moe.students.moe import MoEConfig, MoEStudent
    from secret_moe.students.optim import make_optimizer
    from secret_moe.train import _train_step

    torch.manual_seed(0)
    device = args.device
    x = torch.randn(args.batch, args.d, device=device)
    y = torch.randn(args.batch, args.d, device=device)
    rss0 = maxrss_mib()
    config = MoEConfig(d_model=args.d, shared=args.k, experts=args.m, k=args.k, router="lowrank", rank=args.rank)
    if args.impl == "baseline":
        model = PaperStudent(config).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        model = MoEStudent(config).to(device)
        optimizer = (
            make_optimizer(model, 1e-3) if args.impl == "ours" else torch.optim.Adam(model.parameters(), lr=1e-3)
        )

    amp = MixedPrecision.of(args.precision, device)

    def step() -> None:
        _train_step(model, optimizer, x, y, amp)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    step()
    sync()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    tick = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = (time.perf_counter() - tick) / args.steps
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime) / args.steps
    mem = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else maxrss_mib() - rss0
    print(json.dumps({"seconds": seconds, "samples_per_s": args.batch / seconds, "mem_mib": mem, "cpu_s": cpu}))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="d = 640, m in {1e4, 1e5}, k = 128 only")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per config (default 2)")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument(
        "--attribution", action="store_true", help="also time our student with torch.optim.Adam (module speed-up alone)"
    )
    parser.add_argument(
        "--precisions", nargs="+", default=["float32"], help="distill.precision values to time ours in (first: float32)"
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--d", type=int, default=640, help=argparse.SUPPRESS)
    parser.add_argument("--m", type=int, default=100000, help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, default=128, help=argparse.SUPPRESS)
    return parser.parse_args()


def implementations(attribution: bool, mixed: list[str]) -> dict[str, tuple[str, str]]:
    """label -> (implementation, precision), timed in this order."""
    impls = {"baseline": ("baseline", "float32"), "ours": ("ours", "float32")}
    if attribution:
        impls["ours_torch_adam"] = ("ours_torch_adam", "float32")
    impls.update({f"ours_{p}": ("ours", p) for p in mixed})
    return impls


def time_config(
    args: argparse.Namespace, steps: int, device: str, size: tuple[int, int, int], impls: dict[str, tuple[str, str]]
) -> dict[str, dict]:
    """Each implementation's worker result (or error) at one (d, m, k) on one device, in its own process."""
    d, m, k = size
    result = {}
    for label, (impl, precision) in impls.items():
        result[label] = run_worker(
            __file__,
            ["--impl", impl, "--precision", precision, "--device", device, "--d", str(d), "--m", str(m)]
            + ["--k", str(k), "--rank", str(args.rank), "--batch", str(args.batch), "--steps", str(steps)],
        )
        print(device, d, m, k, label, result[label], file=sys.stderr, flush=True)
    return result


def fmt(r: dict, key: str, f: str) -> str:
    """A worker's number formatted, or its error."""
    return f.format(r[key]) if key in r else r.get("error", "?")


def table_row(
    device: str, size: tuple[int, int, int], result: dict[str, dict], attribution: bool, mixed: list[str]
) -> list:
    d, m, k = size
    base, ours = result["baseline"], result["ours"]
    ratio = (
        f"{ours['samples_per_s'] / base['samples_per_s']:.2f}x" if "error" not in base and "error" not in ours else "-"
    )
    row = [
        device,
        d,
        f"{m:.0e}",
        k,
        k,
        fmt(base, "samples_per_s", "{:.0f}"),
        fmt(ours, "samples_per_s", "{:.0f}"),
        ratio,
        fmt(base, "cpu_s", "{:.2f}"),
        fmt(ours, "cpu_s", "{:.2f}"),
        fmt(base, "mem_mib", "{:.0f}"),
        fmt(ours, "mem_mib", "{:.0f}"),
    ]
    if attribution:
        row.append(fmt(result["ours_torch_adam"], "samples_per_s", "{:.0f}"))
    for precision in mixed:
        other = result[f"ours_{precision}"]
        row.append(fmt(other, "samples_per_s", "{:.0f}"))
        ok = "error" not in other and "error" not in ours
        row.append(f"{other['samples_per_s'] / ours['samples_per_s']:.2f}x" if ok else "-")
    return row


def headers(attribution: bool, mixed: list[str]) -> list[str]:
    names = [
        "device",
        "d",
        "m",
        "s",
        "k",
        "baseline samples/s",
        "ours samples/s",
        "speed-up",
        "baseline CPU s/step",
        "ours CPU s/step",
        "baseline mem MiB",
        "ours mem MiB",
    ] + (["ours w/ torch Adam samples/s"] if attribution else [])
    return names + [h for p in mixed for h in (f"ours {p} samples/s", f"{p} / float32")]


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return

    import torch

    steps = args.steps or 2
    grid = (
        [(640, m, 128) for m in (10_000, 100_000)]
        if args.quick
        else [(d, m, k) for d in (640, 1024) for m in (10_000, 100_000) for k in (16, 128, 512)]
    )
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    mixed = [p for p in args.precisions if p != "float32"]
    impls = implementations(args.attribution, mixed)
    rows = [
        table_row(device, size, time_config(args, steps, device, size, impls), args.attribution, mixed)
        for device in devices
        for size in grid
    ]
    text = "\n".join(
        [
            (
                "MoE student training step (forward + backward + Adam), low-rank router r = "
                f"{args.rank}, batch {args.batch}, {steps} timed steps after 1 warm-up"
            ),
            f"machine: {machine()}",
            "",
            table(headers(args.attribution, mixed), rows),
            "",
            "samples/s: wall clock; CPU s/step: user + system CPU time of the worker per step (all threads);",
            "mem: peak RSS (CPU) over the RSS before the model was built, or torch.cuda.max_memory_allocated.",
        ]
    )
    save("bench_moe_step" + ("_quick" if args.quick else "") + "".join(f"_{p}" for p in mixed), text)


if __name__ == "__main__":
    main()
