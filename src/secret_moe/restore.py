"""Bring a pushed run back with DVC so that Snakemake sees it as finished (docs/dvc.md).

    python -m secret_moe.restore [-r REMOTE] [-j JOBS] [TARGET ...]

pulls the TARGETs (dvc.yaml stage names such as `activations@gemma3-270m`, or paths inside their outputs such as
`results/activations/gemma3-270m/layer9`; default: every stage) with DVC checking the hash of every file it
downloads, then runs `snakemake --touch` on the pulled files.  It refuses to run when config.yaml or the code
differ from dvc.lock for those stages (the files would not be what this checkout makes).

DVC restores bytes, not modification times, and a fresh clone has no `.snakemake/metadata`: the touch puts the
files back in the workflow's order and records the metadata (params, code, input files) Snakemake
compares on later runs, so a changed config value still marks the right jobs stale.  Nothing else is touched:
files of stages that were not pulled keep their own times.

    python -m secret_moe.restore targets GROUP [MODEL]

prints the Snakemake targets (or, with --rules, the rules) of one stage group (tokenizer, tokens, model,
activations, gaussian, distill, their padded_ twins for the padding controls, aggregate, scan and its padded_ twin,
figures), read from config.yaml; the commands of dvc.yaml call it.
The workflow itself never needs DVC.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from itertools import product
from pathlib import Path
from typing import Any

from secret_moe import layout

# dvc.yaml's stage groups (secret_moe.layout), in the workflow's order: their rules and, per model ("{m}"), outputs.
GROUP_RULES = {name: list(stage.rules) for name, stage in layout.stage_groups().items()}
GROUP_OUTS = {
    name: [out.replace("{model}", "{m}") for out in stage.outs()] for name, stage in layout.stage_groups().items()
}


def group_targets(config: dict[str, Any], group: str, model: str | None = None) -> list[str]:
    """The files and folders one dvc.yaml stage asks Snakemake for: every output of its rules whose wildcards the
    config enumerates (distillation runs: the config's grid; temporary bundles and single figures: none, as
    `figures/all` stands for the figures)."""
    from secret_moe.plan import distill_runs, layers_of, run_dir

    if group not in GROUP_RULES:
        raise SystemExit(f"unknown stage group {group!r} (one of {', '.join(GROUP_RULES)})")
    stage = layout.stage_groups()[group]
    if stage.per_model and model not in config["models"]:
        raise SystemExit(f"{group}: unknown model {model!r} (config.yaml has {', '.join(config['models'])})")
    values = {"model": [model], "split": layout.SPLITS, "name": layout.RESULT_TABLES}
    if stage.per_model:
        values["layer"] = layers_of(config, model)
    targets = []
    for kind in stage.writes:
        if kind == "run":
            runs = [run_dir(r) for r in distill_runs(config) if r["model"] == model]
            targets += [f"{run}/{name}" for run in runs for name in layout.RUN_FILES]
            continue
        wildcards = re.findall(r"\{(\w+)\}", layout.PATHS[kind])
        if all(w in values for w in wildcards):
            combos = product(*(values[w] for w in wildcards))
            targets += [layout.path(kind, **dict(zip(wildcards, combo, strict=True))) for combo in combos]
    return targets


def stages(config: dict[str, Any]) -> dict[str, list[str]]:
    """dvc.yaml stage name -> its output paths, in the workflow's order."""

    def models_of(group: str) -> list[str | None]:
        if "{m}" not in GROUP_OUTS[group][0]:
            return [None]
        controls = group.startswith("padded_")  # the padding controls' stages; the others: models of their own
        return [name for name, spec in config["models"].items() if ("same_as" in spec) == controls]

    return {
        (f"{group}@{model}" if model else group): [out.format(m=model) for out in outs]
        for group, outs in GROUP_OUTS.items()
        for model in models_of(group)
    }


def _overlaps(a: str, b: str) -> bool:
    a, b = os.path.normpath(a), os.path.normpath(b)
    return a == b or a.startswith(b + os.sep) or b.startswith(a + os.sep)


def select(config: dict[str, Any], targets: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """The dvc.yaml stages a pull of `targets` touches, and the Snakemake targets inside what it pulls per group."""
    by_stage = stages(config)
    if not targets:
        chosen = list(by_stage)
    else:
        chosen = [
            name
            for name, outs in by_stage.items()
            if name in targets or any(_overlaps(out, t) for out in outs for t in targets if t not in by_stage)
        ]
        unknown = [
            t
            for t in targets
            if t not in by_stage and not any(_overlaps(out, t) for outs in by_stage.values() for out in outs)
        ]
        if unknown:
            raise SystemExit(f"not a dvc.yaml stage nor inside one's outputs: {' '.join(unknown)}")
    paths = [t for t in targets if t not in by_stage]
    files: dict[str, list[str]] = {}
    for name in chosen:
        group, _, model = name.partition("@")
        files.setdefault(group, []).extend(
            f
            for f in group_targets(config, group, model or None)
            if name in targets or not paths or any(_overlaps(f, t) for t in paths)
        )
    return chosen, files


def run(cmd: list[str], what: str) -> None:
    print("+", " ".join(cmd), flush=True)
    code = subprocess.call([sys.executable, "-m", *cmd])  # the dvc and snakemake of this environment
    if code:
        raise SystemExit(f"{what} failed (exit code {code}); no timestamps were changed")


def check_lock(chosen: list[str]) -> None:
    """Refuse to mark files up to date when config.yaml or the code differ from what dvc.lock recorded for them."""
    out = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", *chosen], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"dvc status failed:\n{out.stderr}")
    status = json.loads(out.stdout or "{}")
    problems = []
    for stage in chosen:
        for entry in status.get(stage, []):
            if not isinstance(entry, dict):
                problems.append(f"{stage}: {entry}")
                continue
            for path, state in entry.get("changed deps", {}).items():
                if state != "deleted":  # upstream outputs that were not pulled are fine
                    problems.append(f"{stage}: dependency {path} {state}")
            for path, state in entry.get("changed params", {}).items():
                problems.append(f"{stage}: params of {path} changed: {state}")
    if problems:
        raise SystemExit(
            "config.yaml or the code differ from dvc.lock, so pulled files would not be up to date:\n  "
            + "\n  ".join(problems)
            + "\ncheck out the commit the results were pushed from (nothing was pulled)"
        )


def verify_downloads(remote: str | None) -> str:
    """Make DVC hash what it downloads from `remote` (its `verify` option, off by default): without it, a corrupted
    file inside a directory output on the remote is checked out as it is.  Set in .dvc/config.local only."""
    if remote is None:
        out = subprocess.run([sys.executable, "-m", "dvc", "remote", "default"], capture_output=True, text=True)
        remote = out.stdout.strip()
        if out.returncode or not remote:
            raise SystemExit("no default DVC remote: add one with `dvc remote add -d myremote URL`, or pass -r REMOTE")
    run(["dvc", "remote", "modify", "--local", remote, "verify", "true"], "dvc remote modify")
    return remote


def restore(targets: list[str], remote: str | None = None, jobs: int | None = None) -> None:
    from secret_moe.config import load_config  # here: `targets GROUP --rules` reads no config (imports no torch)

    config = load_config()
    chosen, files = select(config, targets)
    check_lock(chosen)
    remote = verify_downloads(remote)
    run(["dvc", "pull", "-r", remote, *(["-j", str(jobs)] if jobs else []), *targets], "dvc pull")
    present = {group: [f for f in paths if Path(f).exists()] for group, paths in files.items()}
    # One stage group at a time, in the workflow's order, so that every output is newer than its inputs; within
    # a group --forcerun touches every pulled job (not only those whose times look stale), so each gets its
    # metadata.  (A single call would skip jobs behind an ancient() input of another forced job.)
    quiet = ["--quiet", "host", "progress", "rules"]
    for group in GROUP_RULES:
        if present.get(group):
            run(
                ["snakemake", "--touch", "--cores", "1", *quiet, "--forcerun", *present[group], "--", *present[group]],
                "snakemake --touch",
            )
    count = sum(map(len, present.values()))
    print(
        f"restored {count} Snakemake outputs of {', '.join(chosen)}"
        if count
        else "nothing that Snakemake makes was pulled; nothing to touch"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["targets"]:
        parser = argparse.ArgumentParser(prog="python -m secret_moe.restore targets")
        parser.add_argument("group", choices=list(GROUP_RULES))
        parser.add_argument("model", nargs="?")
        parser.add_argument("--rules", action="store_true", help="print the group's Snakemake rules instead")
        args = parser.parse_args(argv[1:])
        if args.rules:
            print(" ".join(GROUP_RULES[args.group]))
            return
        from secret_moe.config import load_config

        print(" ".join(group_targets(load_config(), args.group, args.model)))
        return
    parser = argparse.ArgumentParser(prog="python -m secret_moe.restore", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help="dvc.yaml stages or output paths (default: everything)")
    parser.add_argument("-r", "--remote", help="DVC remote to pull from (default: the project's default remote)")
    parser.add_argument("-j", "--jobs", type=int, help="parallel downloads for dvc pull")
    args = parser.parse_args(argv)
    restore(args.targets, args.remote, args.jobs)


if __name__ == "__main__":
    main()
