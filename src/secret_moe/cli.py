"""The `secret-moe` command (pyproject `[project.scripts]`; also `python -m secret_moe.cli`).

    secret-moe scan MODEL [--layers L ...] [--corpus python_docs | hub | TRAIN VALIDATION]
                          [--budget scan | verdict | BUDGET.yaml] [--cores N] [--dry-run]

asks of every layer of MODEL (or of the layers given) whether a mixture of experts hides in its MLP (docs/scan.md):
it refuses bad arguments before any weights load, writes a complete config to results/scan/<model>/config.yaml,
prints the number of training runs and an estimate of their wall time on this machine, then runs Snakemake on
that config for the model's layer profile (results/scan/<model>/profile.csv) and its figure
(figures/<model>/scan.png).  Snakemake stays the engine: rerunning the command resumes, and the written config
works with any of its options (`--profile profiles/slurm`, DVC's stages) like any other config.

    secret-moe verify [PATH ...]

checks every finished store at or under each PATH (default: results/) against the manifest written when it was
finished: every chunk there, with its size and CRC-32 (store_check.py, docs/robustness.md).  It prints one line per
store and exits 1 when any is damaged; it trains nothing and writes nothing.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from secret_moe.config import REPO, SCHEMA, load_config
from secret_moe.errors import ScanArgumentError, SecretMoeError
from secret_moe.layout import path
from secret_moe.plan import distill_runs, ladder_budgets
from secret_moe.scan.budget import PRESETS, check_one_moe, corpus_choice, load_budget, scan_config
from secret_moe.scan.progress import JobSummaries
from secret_moe.scan.target import Target, check_requested_layers, resolve
from secret_moe.settings import DistillSettings

# what the runs of a scan are counted by: run key -> (singular, plural)
RUN_COUNTS = {
    "layer": ("layer", "layers"),
    "data": ("data", "data"),
    "student": ("student", "students"),
    "seed": ("seed", "seeds"),
    "lr": ("learning rate", "learning rates"),
}


@dataclass(frozen=True)
class Plan:
    """Everything a scan will do, worked out before it starts."""

    target: Target
    layers: list[int]
    budget: str
    config: dict[str, Any]  # as written
    resolved: dict[str, Any]  # with the schema's defaults, as the Snakefile sees it
    runs: list[dict[str, Any]]
    config_path: str
    targets: list[str]


def at_least_one(text: str) -> int:
    """An argument that counts something that must exist (`--cores 0` would start Snakemake with nothing to run on)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="secret-moe", description="Secret mixtures of experts inside your LLM.")
    commands = main.add_subparsers(dest="command", required=True)
    scan = commands.add_parser("scan", help="which layers of a model hide a mixture of experts (docs/scan.md)")
    scan.add_argument("model", metavar="MODEL", help="a key of config.yaml's models, a folder, a .gguf file, org/name")
    scan.add_argument("--layers", type=int, nargs="+", metavar="L", help="the layers to scan (default: all)")
    scan.add_argument(
        "--corpus", nargs="+", metavar="SOURCE", help="python_docs, hub, or a train and a validation file"
    )
    scan.add_argument("--budget", default="scan", help=f"a preset ({', '.join(PRESETS)}) or a budget YAML")
    scan.add_argument(
        "--cores", type=at_least_one, default=os.cpu_count() or 1, help="Snakemake's --cores (default: all)"
    )
    scan.add_argument("--dry-run", action="store_true", help="print the plan and its estimate, write and run nothing")
    verify = commands.add_parser("verify", help="check finished stores for missing or damaged chunks (no training)")
    verify.add_argument("paths", nargs="*", metavar="PATH", default=["results"], help="stores or folders (results/)")
    return main


def validated_config(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of the config with the schema's defaults, checked as the Snakefile checks it (nothing loads)."""
    try:
        return load_config(config)
    except SecretMoeError as error:
        raise ScanArgumentError(f"the scan's config is invalid: {error}") from error


def plan_scan(args: argparse.Namespace) -> Plan:
    """Resolve the budget, the corpus, MODEL and the layers, in that order (the cheap arguments first: MODEL may be a
    GGUF file to read), into a Plan; refuse any that cannot work (ScanArgumentError, naming the argument) before any
    weights load."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())
    schema = yaml.safe_load(SCHEMA.read_text())
    default_rank = schema["properties"]["models"]["additionalProperties"]["properties"]["router_rank"]["default"]
    budget, corpus = load_budget(args.budget, REPO), corpus_choice(args.corpus)
    target = resolve(args.model, base["models"], default_rank)
    layers = check_requested_layers(target, args.layers)
    config = scan_config(base, budget, corpus, target, layers)
    resolved = validated_config(config)
    check_one_moe(resolved)
    name = target.name
    targets = [path("profile", model=name), path("model_figure", model=name, figure="scan", ext="png")]
    config_path = path("scan_config", model=name)
    return Plan(target, layers, args.budget, config, resolved, distill_runs(resolved), config_path, targets)


def estimate(plan: Plan, cores: int) -> tuple[float, int] | None:
    """(estimated wall seconds of the distillation, parallel jobs), or None without token caps to size it by."""
    from secret_moe.scan.estimate import estimate_seconds, time_students

    distill, caps = plan.resolved["distill"], plan.resolved["corpus"]["max_tokens"]
    if not plan.runs or caps.get("train") is None or caps.get("validation") is None:
        return None
    students = sorted({run["student"] for run in plan.runs})
    steps, threads = plan.resolved["scan"]["timing_steps"], distill["threads"]
    settings, rate = DistillSettings.from_config(plan.resolved), distill["learning_rates"][0]
    times = time_students(students, plan.target.hidden, settings.batch_size, steps, rate, threads)
    jobs = max(1, cores // threads)
    return estimate_seconds(plan.runs, times, caps, settings.batch_size, settings.schedule, jobs), jobs


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 90 else f"{int(minutes // 60)} h {minutes % 60:02.0f} min"


def describe(plan: Plan, cores: int, timed: tuple[float, int] | None) -> list[str]:
    """The plan, as the lines the command prints before it starts."""
    distill, caps = plan.resolved["distill"], plan.resolved["corpus"]["max_tokens"]
    counts = {key: len({run[key] for run in plan.runs}) for key in RUN_COUNTS}
    ladder = ladder_budgets(plan.resolved)
    lines = [
        f"secret-moe scan: {plan.target.described} -> model {plan.target.name!r} "
        f"({plan.target.layers} layers, hidden size {plan.target.hidden})",
        f"  layers: {' '.join(map(str, plan.layers))}",
        f"  budget: {plan.budget}: {distill['epochs']} epochs"
        + (f" (ladder {'/'.join(map(str, ladder))})" if ladder else "")
        + f", {caps['train']} train / {caps['validation']} validation tokens per store, seeds {distill['seeds']}",
        f"  {len(plan.runs)} training runs ("
        + " x ".join(f"{n} {RUN_COUNTS[key][n != 1]}" for key, n in counts.items())
        + ")",
    ]
    if timed is None:
        lines.append("  no estimate: corpus.max_tokens has no cap, so the rows per store are unknown before tokenising")
    else:
        (seconds, jobs), steps = timed, plan.resolved["scan"]["timing_steps"]
        lines.append(
            f"  estimated distillation time on this machine: {duration(seconds)} on {cores} cores ({jobs} parallel "
            f"jobs), from timing {steps} training step{'s' if steps != 1 else ''} of each student at d = "
            f"{plan.target.hidden}; capture, Gaussian samples and job start-up come on top"
        )
    lines += [f"  config: {plan.config_path}", "  " + shlex.join(short_command(plan, cores))]
    return lines


def short_command(plan: Plan, cores: int) -> list[str]:
    """The Snakemake command as one would type it in the repository (targets first: --configfile takes several)."""
    return ["snakemake", "--cores", str(cores), *plan.targets, "--configfile", plan.config_path]


def write_config(plan: Plan, argv: list[str]) -> None:
    out = Path(plan.config_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Written by `secret-moe {shlex.join(argv)}` (docs/scan.md): the complete config of this scan.\n"
        f"# Resume with the same command, or: {shlex.join(short_command(plan, 1))}\n"
    )
    out.write_text(header + yaml.safe_dump(plan.config, sort_keys=False))


def run_snakemake(plan: Plan, cores: int) -> int:
    """Snakemake on the written config, in the current folder, its output passed through with one summary line per
    finished job; returns its exit code."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(Path.cwd())]
    command += short_command(plan, cores)[1:]
    # the rule scripts import the package of the Snakefile they run
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")]))}
    summaries = JobSummaries()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            if (summary := summaries.feed(line)) is not None:
                sys.stdout.write(summary + "\n")
            sys.stdout.flush()
    return process.returncode


def scan(args: argparse.Namespace, argv: list[str]) -> int:
    plan = plan_scan(args)
    timed = estimate(plan, args.cores)
    sys.stdout.write("\n".join(describe(plan, args.cores, timed)) + "\n")
    sys.stdout.flush()
    if args.dry_run:
        return 0
    write_config(plan, argv)
    return run_snakemake(plan, args.cores)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def verify(args: argparse.Namespace) -> int:
    from secret_moe.store_check import verify as verify_stores

    try:
        return verify_stores(args.paths, say)
    except SecretMoeError as error:
        sys.stderr.write(f"secret-moe verify: error: {error}\n")
        return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.command == "verify":
        return verify(args)
    try:
        return scan(args, argv)
    except SecretMoeError as error:  # ScanArgumentError names the argument; the others their config key or file
        sys.stderr.write(f"secret-moe scan: error: {error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
