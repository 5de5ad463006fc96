"""Fused against for-loop Adam on the real MoE (issue 30 item 0): how far apart one step puts them, and how fast the
training then carries any such difference apart.

On a store (default: the default run's Gemma-3-270M layer-9 store), the seed-spread student
(`moe_lowrank_r128_m1024_s32_k32`, as `benchmarks/seed_spread.py` builds it) is copied four times:

- `fused`: the package's Adam (`students.optim.make_optimizer`, PyTorch's fused implementation);
- `loop`: `torch.optim.Adam`'s default for-loop implementation;
- `fused_ulp`: the fused Adam again, from weights one unit in the last place away (every weight of the router's first
  factor nudged by `torch.nextafter`): the size of difference rounding makes;
- `fused_twin`: the fused Adam from the very same weights: the control, which must stay bitwise equal to `fused`.

Step 1 gives all four the same gradient (computed once) and compares the updates element by element.  Then the four
train on the same batches (full row permutation, lr 3e-3, batch 1024) for --steps steps, and every --every steps the
script prints each one's relative parameter distance to `fused` (||a - b|| / ||b|| over all parameters) and its
training loss.  If `loop` drifts from `fused` no faster than `fused_ulp` does, the two Adams differ as rounding does,
and the difference between their seeds' FVUs is the chaos of the training, not a different update.

    python benchmarks/adam_step_check.py --train results/activations/gemma3-270m/layer9/train.zarr \\
        --validation results/activations/gemma3-270m/layer9/validation.zarr --out benchmarks/results/adam_step_check
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

STUDENT = "moe_lowrank_r128_m1024_s32_k32"


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _step_table(models: dict[str, nn.Module], before: dict[str, torch.Tensor]) -> list[dict]:
    """Per parameter tensor: the largest |update difference| of each copy against `fused`, relative to the largest
    |update| of `fused`, and the share of elements whose update differs at all."""
    rows = []
    names = [name for name, _ in models["fused"].named_parameters()]
    params = {key: dict(model.named_parameters()) for key, model in models.items()}
    for name in names:
        update = params["fused"][name].detach() - before[f"fused.{name}"]
        row = {"parameter": name, "elements": update.numel(), "max_update": float(update.abs().max())}
        for key in ("loop", "fused_twin"):
            other = params[key][name].detach() - before[f"{key}.{name}"]
            diff = (other - update).abs()
            row[f"{key}_max_rel"] = float(diff.max() / update.abs().max().clamp_min(1e-30))
            row[f"{key}_differ"] = float((diff > 0).float().mean())
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--validation", type=Path, required=True)
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--steps", type=int, default=980, help="training steps after the first (98 per epoch)")
    parser.add_argument("--every", type=int, default=49)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/adam_step_check"))
    args = parser.parse_args()

    from secret_moe.provenance import set_seed
    from secret_moe.settings import DistillSettings
    from secret_moe.steps.distill import _Data
    from secret_moe.students import build_student, parse_student
    from secret_moe.students.optim import make_optimizer

    torch.set_num_threads(1)
    data = _Data.open(
        args.train, args.validation, args.layer, DistillSettings(1024, 0, in_memory=True), args.seed, "cpu"
    )
    set_seed(args.seed)
    base = build_student(parse_student(STUDENT), data.train.d_model)
    models = {key: copy.deepcopy(base) for key in ("fused", "loop", "fused_ulp", "fused_twin")}
    with torch.no_grad():
        first = models["fused_ulp"].router.key_proj.weight
        first.copy_(torch.nextafter(first, torch.full_like(first, float("inf"))))
    optimizers = {
        "fused": make_optimizer(models["fused"], args.lr),
        "loop": torch.optim.Adam(models["loop"].parameters(), lr=args.lr, foreach=False, fused=False),
        "fused_ulp": make_optimizer(models["fused_ulp"], args.lr),
        "fused_twin": make_optimizer(models["fused_twin"], args.lr),
    }
    assert optimizers["fused"].defaults["fused"] and not optimizers["loop"].defaults["fused"]

    batches = data.train.epoch(0)
    x, y = next(batches)
    loss = nn.functional.mse_loss(models["fused"](x), y)
    loss.backward()
    grads = [p.grad.clone() for p in models["fused"].parameters()]
    before = {f"{key}.{n}": p.detach().clone() for key, m in models.items() for n, p in m.named_parameters()}
    for key, model in models.items():
        for p, g in zip(model.parameters(), grads, strict=True):
            p.grad = g.clone()
        optimizers[key].step()
    step_rows = _step_table(models, before)

    drift = []
    step, epoch = 1, 0
    while step <= args.steps:
        for x, y in batches:
            losses = {}
            for key, model in models.items():
                optimizers[key].zero_grad(set_to_none=True)
                loss = nn.functional.mse_loss(model(x), y)
                loss.backward()
                optimizers[key].step()
                losses[key] = float(loss.detach())
            step += 1
            if step % args.every == 0 or step > args.steps:
                ref = _flat(models["fused"])
                row = {"step": step, "loss_fused": losses["fused"]}
                for key in ("loop", "fused_ulp", "fused_twin"):
                    row[f"{key}_distance"] = float((_flat(models[key]) - ref).norm() / ref.norm())
                    row[f"{key}_loss"] = losses[key]
                drift.append(row)
                print(json.dumps(row), flush=True)
            if step > args.steps:
                break
        epoch += 1
        batches = data.train.epoch(epoch)

    args.out.mkdir(parents=True, exist_ok=True)
    where = machine()  # one reading of the load average for both files
    (args.out / "adam_step_check.json").write_text(
        json.dumps(
            {
                "machine": where,
                "args": {k: str(v) for k, v in vars(args).items()},
                "step_1": step_rows,
                "drift": drift,
            },
            indent=1,
        )
    )
    lines = [f"Machine: {where}", "", f"Store: {args.train}; {STUDENT}, seed {args.seed}, lr {args.lr}", ""]
    lines += [
        "Step 1, the same gradient: update difference against `fused`, largest, relative to `fused`'s largest",
        "update, and the share of elements that differ at all.",
        "",
        "| parameter | elements | max update | loop: max rel diff | loop: share differ | twin: max rel diff |",
        "|---|---|---|---|---|---|",
    ]
    for r in step_rows:
        lines.append(
            f"| {r['parameter']} | {r['elements']:,} | {r['max_update']:.3g} | {r['loop_max_rel']:.2g} | "
            f"{r['loop_differ']:.1%} | {r['fused_twin_max_rel']:.2g} |"
        )
    lines += [
        "",
        "Relative parameter distance to `fused` on the same batches (and training loss):",
        "",
        "| step | loop | fused, 1 ULP apart | fused twin | loss fused / loop / 1 ULP |",
        "|---|---|---|---|---|",
    ]
    for r in drift:
        lines.append(
            f"| {r['step']} | {r['loop_distance']:.2e} | {r['fused_ulp_distance']:.2e} | "
            f"{r['fused_twin_distance']:.1e} | {r['loss_fused']:.5f} / {r['loop_loss']:.5f} / "
            f"{r['fused_ulp_loss']:.5f} |"
        )
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
