"""Router scoring cost: product-key vs low-rank routers at m = 1e5 and 1e6 experts.

Forward + backward of the router alone (x → top-k scores and indices; loss = Σ softmax(scores) · c, so
every kept score gets a gradient), batch 1024, d = 640, rank 128.  Rows: the paper's low-rank router
(`baseline.PaperRouter`: dense scores, dense backward), ours (`routers.LowRankRouter`: dense scores,
backward through the kept scores only) and the product-key router (O(√m·r) scoring per token).
m must be a square for product keys: 316² = 99856 and 1000² = 1e6.

    python benchmarks/bench_router.py                 # k = 128
    python benchmarks/bench_router.py --ks 16 128     # more k
    python benchmarks/bench_router.py --quick         # m = 1e5 only
"""

from __future__ import annotations

import argparse
import time

from _common import machine, save, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="m = 316² only")
    parser.add_argument("--ks", type=int, nargs="+", default=[128])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--d", type=int, default=640)
    parser.add_argument("--rank", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()

    import torch

    from secret_moe.students.baseline import PaperRouter
    from secret_moe.students.routers import LowRankRouter, ProductKeyRouter

    routers = {
        "lowrank (paper: dense backward)": lambda m, k: PaperRouter("lowrank", args.d, m, k, args.rank),
        "lowrank (ours: sparse backward)": lambda m, k: LowRankRouter(args.d, m, k, args.rank),
        "product_key": lambda m, k: ProductKeyRouter(args.d, m, k, args.rank),
    }
    ks = args.ks
    rows = []
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.d)
    for m in (316**2,) if args.quick else (316**2, 1000**2):
        for k in ks:
            c = torch.randn(args.batch, k)
            rates = {}
            for name, make in routers.items():
                router = make(m, k)

                def step(router: torch.nn.Module = router, c: torch.Tensor = c) -> None:
                    router.zero_grad(set_to_none=True)
                    scores, _ = router(x)
                    (torch.softmax(scores, -1) * c).sum().backward()

                step()
                tick = time.perf_counter()
                for _ in range(args.steps):
                    step()
                rates[name] = args.steps * args.batch / (time.perf_counter() - tick)
                router = step = None  # free before the next router is built
            base = rates["lowrank (paper: dense backward)"]
            rows += [[f"{m}", k, name, f"{rate:.0f}", f"{rate / base:.2f}x"] for name, rate in rates.items()]
    text = "\n".join(
        [
            (
                f"Router forward + backward, batch {args.batch}, d = {args.d}, rank {args.rank}, "
                f"{args.steps} timed steps after 1 warm-up"
            ),
            f"machine: {machine()}",
            "",
            table(["m", "k", "router", "samples/s", "vs paper lowrank"], rows),
        ]
    )
    save("bench_router" + ("_quick" if args.quick else ""), text)


if __name__ == "__main__":
    main()
