"""GPU check: does the package work on this CUDA card, how fast, and how long would config/paper.yaml take?

One command, offline, for a machine with a CUDA GPU (docs/performance.md "GPU check"):

    python benchmarks/gpu_check.py OUT                  # full size; OUT/gpu_check.json and a summary
    python benchmarks/gpu_check.py OUT --stores results/activations/gemma3-270m/layer9/{train,validation}.zarr
    python benchmarks/gpu_check.py OUT --tiny           # smoke test (CI, tests/benchmarks/test_gpu_check.py)

Parts, in order:
1. the CUDA-only tests (`pytest -m cuda tests`: those that skip on a CPU);
2. the card's bounds, measured here: matmul GFLOP/s (1024 x 640 x 4096, per precision) and copy GB/s;
3. the training step (`train._train_step`, as distillation takes it) of the MLP and MoE students at d = 640,
   batch 1024 (m = 4,096 and 1e5, s = k = 32 and 128; MLPs of the same active widths), in each
   `distill.precision`: samples/s, and FLOP/s and bytes/s (`bench_roofline.step_model`) as shares of the bounds;
4. one real bundle of the default config (`config.yaml`: the runs of the activations store, seed 0), trained by
   `steps.distill.train_students` for --epochs epochs in each precision on the GPU and in float32 on the CPU,
   from the same store and seed: validation FVUs side by side, and whether they agree within FVU_TOLERANCE
   (a device must; a mixed precision's difference is reported);
   the store is --stores, else built here by the real workflow (Snakemake, the offline GGUF teacher);
5. a projection of config/paper.yaml's distillation wall time on this card: its runs and epochs from the
   package's plan (`plan.distill_runs`), each run's step time from the roofline model at the shares that
   step 3 measured for its kind of student.

It exits 1 when a CUDA test fails or the GPU's and the CPU's float32 FVUs disagree, else 0.  Without CUDA
it says so in one line and runs parts 2-5 on the CPU (the bundle in float32 and bfloat16).  Sizing (full, one
recent GPU; estimated, no GPU has run it yet): the tests about 1 minute (most of it collection), bounds and
steps under 1 minute (6 students x 3 precisions x 20 steps of at most ~20 ms, plus building each student),
the store 1-3 minutes (GGUF to safetensors, tokenising, captures of 100k and 12k tokens), the bundle (8 runs,
98 steps an epoch, 3 epochs) seconds per precision on the GPU and 1-2.5 minutes on one CPU core (144 s
measured on the loaded 2-core VM): under 8 minutes in all.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import machine, table
from bench_data_path import step_rate
from bench_roofline import machine_bounds, step_model

REPO = Path(__file__).resolve().parents[1]
PRECISIONS = ("float32", "bfloat16", "float16")
# Relative final-FVU difference accepted between two float32 trainings of the same bundle, seed and store on
# two devices: they only round differently (measured on the default's store, 3 epochs: 0.15% between 1 and 2
# CPU threads for its MoE at lr 0.01); 2% is >10x that and below the 3% by which the budget check calls a
# student unconverged.  A device beyond it fails the check; a mixed precision beyond it is reported, as a
# measurement for the user's choice of `distill.precision` (on the CPU, bfloat16 moved that MoE by 2.8%).
FVU_TOLERANCE = 0.02
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "d": 640,
        "batch": 1024,
        "students": [
            "mlp_h64",
            "mlp_h256",
            "moe_lowrank_r128_m4096_s32_k32",
            "moe_lowrank_r128_m4096_s128_k128",
            "moe_lowrank_r128_m100000_s32_k32",
            "moe_lowrank_r128_m100000_s128_k128",
        ],
        "steps": {"cuda": 20, "cpu": 3},
        "epochs": 3,
    },
    "tiny": {
        "d": 32,
        "batch": 128,
        "students": ["mlp_h8", "moe_lowrank_r8_m256_s4_k4"],
        "steps": {"cuda": 5, "cpu": 2},
        "epochs": 2,
        "rows": {"train": 8192, "validation": 1024},
    },
}
# config/paper.yaml's teachers' hidden sizes (hidden_size in their config.json on the Hub)
D_MODEL = {"EleutherAI/pythia-70m": 512, "google/gemma-3-270m": 640, "EleutherAI/pythia-410m": 1024}
# Rows of one paper store (Wikitext-2 raw, lines >= 20 tokens, cut at 512): an estimate, ~2.1M words of
# train text at ~1.2 tokens per word, and 2,000 validation lines of ~150 tokens; --paper-rows replaces it
# with the `x` rows of a real store.
PAPER_ROWS = (2_500_000, 300_000)


def load(config_path: Path) -> dict[str, Any]:
    """A config with the schema's defaults filled in and its padding controls resolved, as the Snakefile sees it."""
    import yaml
    from snakemake.utils import validate

    from secret_moe.plan import resolve_variants

    config = yaml.safe_load(config_path.read_text())
    validate(config, str(REPO / "config" / "schema.yaml"), set_default=True)
    resolve_variants(config)
    return config


def cuda_tests() -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    tick = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "cuda", "tests", "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    counts = {
        word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|errors?)", lines[-1] if lines else "")
    }
    return {"returncode": proc.returncode, "counts": counts, "seconds": time.perf_counter() - tick, "tail": lines[-30:]}


def measure_bounds(device: str, precisions: list[str], threads: int) -> dict[str, dict[str, float]]:
    reps = 100 if device == "cuda" else 10
    bounds = {}
    for precision in precisions:
        gflops, gbs = machine_bounds(threads, device, precision, reps)
        bounds[precision] = {"matmul_gflops": gflops, "copy_gbs": gbs}
    return bounds


def measure_steps(
    device: str, size: dict[str, Any], precisions: list[str], bounds: dict[str, dict[str, float]]
) -> list[dict[str, Any]]:
    import torch

    from secret_moe.students import parse_student

    rows = []
    for name in size["students"]:
        flops, bytes_ = step_model(parse_student(name), size["d"], size["batch"])
        for precision in precisions:
            rate = step_rate(name, size["d"], size["batch"], size["steps"][device], device, precision)
            seconds = size["batch"] / rate
            bound = bounds[precision]
            rows.append(
                {
                    "student": name,
                    "precision": precision,
                    "samples_per_s": rate,
                    "ms_per_step": seconds * 1e3,
                    "gflop_per_step": flops / 1e9,
                    "mb_per_step": bytes_ / 1e6,
                    "matmul_share": flops / seconds / 1e9 / bound["matmul_gflops"],
                    "bandwidth_share": bytes_ / seconds / 1e9 / bound["copy_gbs"],
                }
            )
            if device == "cuda":
                torch.cuda.empty_cache()
    return rows


def default_bundle(config: dict[str, Any], epochs: int) -> list[dict[str, Any]]:
    """The first bundle of the default config's plan that reads the activations store with its first seed."""
    from secret_moe.plan import distill_runs, plan_bundles

    distill = config["distill"]
    bundles = plan_bundles(distill_runs(config), lambda run: None, distill["bundle_size"])
    for (_, _, data, _), runs in bundles.items():
        if data == "activations" and runs[0]["epochs"] == distill["epochs"] and runs[0]["seed"] == distill["seeds"][0]:
            return [{**run, "epochs": epochs} for run in runs]
    raise SystemExit("config.yaml's plan has no bundle of the activations store")


def synthetic_stores(folder: Path, rows: dict[str, int], d: int, layer: int) -> dict[str, str]:
    """Tiny stores of a fixed random GELU MLP teacher (y = teacher(x), x Gaussian), in the store layout."""
    import torch

    from secret_moe.store import chunk_rows_for, commit_rows, create_store, finish_store, partial_path

    torch.manual_seed(12345)  # not a student's seed: a student of the teacher's width must not start as the teacher
    teacher = torch.nn.Sequential(torch.nn.Linear(d, 3 * d), torch.nn.GELU(), torch.nn.Linear(3 * d, d))
    paths = {}
    for i, (split, n) in enumerate(rows.items()):
        x = np.random.default_rng(i).standard_normal((n, d), dtype=np.float32)
        with torch.no_grad():
            y = teacher(torch.from_numpy(x)).numpy()
        final = folder / f"{split}.zarr"
        attrs = {"layer": layer, "model_id": "synthetic", "rows": "samples"}
        group = create_store(partial_path(final), n, d, chunk_rows_for(d, 0.0625), attrs)
        group["x"][:], group["y"][:] = x, y
        commit_rows(partial_path(final), n)
        finish_store(partial_path(final), final)
        paths[split] = str(final)
    return paths


def workflow_stores(work: Path, run: dict[str, Any]) -> dict[str, str]:
    """The default config's activation stores of the bundle's model and layer, made by the real workflow."""
    from secret_moe.layout import path

    work.mkdir(parents=True, exist_ok=True)
    configfile = work / "config.yaml"
    configfile.write_text((REPO / "config.yaml").read_text())
    targets = {s: path("activations", model=run["model"], layer=run["layer"], split=s) for s in ("train", "validation")}
    command = [str(Path(sys.executable).with_name("snakemake")), "-s", str(REPO / "Snakefile")]
    command += ["--configfile", str(configfile), "-d", str(work), "--cores", str(os.cpu_count()), *targets.values()]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"building the stores failed (logs under {work}/logs):\n{proc.stderr[-3000:]}")
    return {split: str(work / target) for split, target in targets.items()}


def one_rung(distill: dict[str, Any]) -> dict[str, Any]:
    """The config's recipe on the bundle's own budget: its schedule with one rung (a ladder of 8/16/32 epochs
    cannot be cut to the check's 2 or 3), the same step for every epoch timed."""
    return {**distill, "schedule": {**distill.get("schedule", {}), "rungs": 1}}


def train_bundle(
    stores: dict[str, str], runs: list[dict[str, Any]], config: dict[str, Any], device: str, precision: str
) -> dict[str, Any]:
    from secret_moe.layout import RUN_FILES, TIMING_FILE, member_dir
    from secret_moe.provenance import read_json
    from secret_moe.steps.distill import train_students

    with tempfile.TemporaryDirectory() as folder:
        tick = time.perf_counter()
        train_students(
            stores["train"],
            stores["validation"],
            folder,
            runs=runs,
            distill={**one_rung(config["distill"]), "precision": precision},
            seed=config["seed"],
            device=device,
            threads=config["distill"]["threads"] if device == "cpu" else 1,
        )
        seconds = time.perf_counter() - tick
        results = {}
        for run in runs:
            metrics = read_json(member_dir(folder, run) / RUN_FILES[0])
            timing = read_json(member_dir(folder, run) / TIMING_FILE)
            results[f"{run['student']}_lr{run['lr']}"] = {
                "final_fvu": metrics["final_fvu"],
                "val_fvu": [h["val_fvu"] for h in metrics["history"]],
                "seconds": timing["wall_seconds"],
            }
    return {"device": device, "precision": precision, "seconds": seconds, "runs": results}


def agreement(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """The largest relative difference of final FVU between two trainings of the same bundle (b the reference)."""
    diffs = {run: abs(a["runs"][run]["final_fvu"] / b["runs"][run]["final_fvu"] - 1) for run in b["runs"]}
    worst = max(diffs, key=diffs.get)
    return {
        "compared": f"{a['device']} {a['precision']} vs {b['device']} {b['precision']}",
        "max_relative_difference": diffs[worst],
        "worst_run": worst,
        "tolerance": FVU_TOLERANCE,
        "agree": diffs[worst] <= FVU_TOLERANCE,
        "kind": "device" if a["device"] != b["device"] else "precision",
    }


def project_paper(
    steps: list[dict[str, Any]], bounds: dict[str, dict[str, float]], size: dict[str, Any], rows: tuple[int, int]
) -> dict[str, Any]:
    """config/paper.yaml's distillation time on this device: every run's epochs x (train steps + a third of a
    step per validation batch), a step's time = its roofline time / the median share of its roofline time
    that the measured students of its kind (MLP, MoE) reached, in the paper's precision (float32 where this
    device's check did not measure it)."""
    from secret_moe.plan import distill_runs, plan_bundles
    from secret_moe.students import parse_student

    paper = load(REPO / "config" / "paper.yaml")
    precision, batch = paper["distill"]["precision"], paper["distill"]["batch_size"]
    precision = precision if precision in bounds else "float32"
    bound = bounds[precision]

    def roofline_seconds(spec: dict[str, Any], d: int, batch: int) -> float:
        flops, bytes_ = step_model(spec, d, batch)
        return max(flops / (bound["matmul_gflops"] * 1e9), bytes_ / (bound["copy_gbs"] * 1e9))

    shares: dict[str, list[float]] = {}
    for row in steps:
        if row["precision"] == precision:
            spec = parse_student(row["student"])
            shares.setdefault(spec["kind"], []).append(
                roofline_seconds(spec, size["d"], size["batch"]) / (row["ms_per_step"] / 1e3)
            )
    share = {kind: statistics.median(values) for kind, values in shares.items()}
    runs = distill_runs(paper)
    train_steps, val_steps = (math.ceil(n / batch) for n in rows)
    by_student: dict[str, float] = {}
    for run in runs:
        spec = parse_student(run["student"])
        step = roofline_seconds(spec, D_MODEL[paper["models"][run["model"]]["hf_id"]], batch) / share[spec["kind"]]
        by_student[run["student"]] = by_student.get(run["student"], 0.0) + run["epochs"] * step * (
            train_steps + val_steps / 3
        )
    total = sum(by_student.values())
    costliest = sorted(by_student.items(), key=lambda item: -item[1])[:5]
    return {
        "precision": precision,
        "runs": len(runs),
        "run_epochs": sum(run["epochs"] for run in runs),
        "bundles": len(plan_bundles(runs, lambda run: None, paper["distill"]["bundle_size"])),
        "rows_per_store": {"train": rows[0], "validation": rows[1]},
        "share_of_roofline": share,
        "gpu_hours": total / 3600,
        "costliest_students": [{"student": s, "share": t / total} for s, t in costliest],
        "not_counted": "extraction, Gaussian fits, figures, and each bundle's start-up and store read",
    }


def summary(report: dict[str, Any]) -> str:
    lines = [f"GPU check ({report['size']}), {report['seconds']:.0f} s; {report['machine']}"]
    tests = report["cuda_tests"]
    if tests:
        lines.append(f"CUDA tests: {tests['counts']} (exit {tests['returncode']}, {tests['seconds']:.0f} s)")
    bounds = ", ".join(f"{p} {b['matmul_gflops']:.0f} GFLOP/s" for p, b in report["bounds"].items())
    copy = next(iter(report["bounds"].values()))["copy_gbs"]
    lines.append(f"bounds ({report['device']}): matmul {bounds}; copy {copy:.1f} GB/s")
    step_rows = [
        [
            r["student"],
            r["precision"],
            f"{r['samples_per_s']:.0f}",
            f"{r['ms_per_step']:.2f}",
            f"{r['matmul_share']:.0%}",
            f"{r['bandwidth_share']:.0%}",
        ]
        for r in report["steps"]
    ]
    lines.append(table(["student", "precision", "samples/s", "ms/step", "of matmul", "of copy"], step_rows))
    for bundle in report["bundles"]:
        fvus = ", ".join(f"{r['final_fvu']:.4f}" for r in bundle["runs"].values())
        lines.append(f"bundle {bundle['device']} {bundle['precision']} ({bundle['seconds']:.0f} s): final FVUs {fvus}")
    for check in report["agreement"]:
        verdict = "within" if check["agree"] else "BEYOND"
        if check["kind"] == "device":
            verdict += " (a device beyond it fails the check)"
        lines.append(
            f"{check['compared']}: max relative FVU difference {check['max_relative_difference']:.2%} "
            f"({check['worst_run']}), tolerance {check['tolerance']:.0%}: {verdict}"
        )
    paper = report["paper_projection"]
    costly = ", ".join(f"{c['student']} {c['share']:.0%}" for c in paper["costliest_students"][:3])
    caveat = " (calibrated on the tiny steps: not a real projection)" if report["size"] == "tiny" else ""
    lines.append(
        f"config/paper.yaml on this {report['device']}{caveat}: {paper['runs']:,} runs, {paper['run_epochs']:,} "
        f"run-epochs in {paper['bundles']:,} bundles: ~{paper['gpu_hours']:,.0f} device-hours of distillation in "
        f"{paper['precision']}, ~{paper['gpu_hours'] / 24:,.1f} days on one device "
        f"(stores of {paper['rows_per_store']['train']:,} train rows assumed; costliest: {costly})"
    )
    lines.append(f"written: {report['output']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder for gpu_check.json (created)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and synthetic stores: a smoke test")
    parser.add_argument("--stores", nargs=2, metavar=("TRAIN", "VALIDATION"), help="activation stores to train on")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the bundle (default: 3, tiny: 2)")
    parser.add_argument("--paper-rows", nargs=2, type=int, default=PAPER_ROWS, metavar=("TRAIN", "VALIDATION"))
    args = parser.parse_args()

    import torch

    tick = time.perf_counter()
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    device = "cuda" if cuda else "cpu"
    if cuda is None:
        print("no CUDA device: skipping the CUDA tests and the CPU/GPU comparison; running the CPU parts only")
    size = SIZES["tiny" if args.tiny else "full"]
    precisions = list(PRECISIONS) if cuda else ["float32", "bfloat16"]  # float16 on a CPU: tests/train/test_fit.py
    config = load(REPO / "config.yaml")
    threads = config["distill"]["threads"]
    report: dict[str, Any] = {"size": "tiny" if args.tiny else "full", "cuda": cuda, "device": device}
    report["cuda_tests"] = cuda_tests() if cuda else None
    report["bounds"] = measure_bounds(device, precisions, threads)
    report["steps"] = measure_steps(device, size, precisions, report["bounds"])

    runs = default_bundle(config, args.epochs or size["epochs"])
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        if args.stores:
            stores = dict(zip(("train", "validation"), args.stores, strict=True))
        elif args.tiny:
            stores = synthetic_stores(Path(scratch), size["rows"], size["d"], runs[0]["layer"])
        else:
            stores = workflow_stores(args.out / "work", runs[0])
        report["stores"] = stores
        report["bundle"] = [f"{run['student']}_lr{run['lr']}" for run in runs]
        report["bundles"] = [train_bundle(stores, runs, config, device, p) for p in precisions]
        if cuda:
            report["bundles"].append(train_bundle(stores, runs, config, "cpu", "float32"))
    reference = report["bundles"][0]
    report["agreement"] = [agreement(b, reference) for b in report["bundles"][1:]]
    report["paper_projection"] = project_paper(report["steps"], report["bounds"], size, tuple(args.paper_rows))
    report["machine"] = machine()
    report["seconds"] = time.perf_counter() - tick
    report["output"] = str(args.out / "gpu_check.json")
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    print(summary(report))
    devices_agree = all(c["agree"] for c in report["agreement"] if c["kind"] == "device")
    failed = (report["cuda_tests"] or {}).get("returncode", 0) != 0 or not devices_agree
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
