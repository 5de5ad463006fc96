"""Issue 28's damaged store, replayed on the real Snakefile: what each command says about a deleted and a truncated
chunk of a training store, and when.

A small run of the tiny model (hidden size 32; 40,000 train tokens, so five 8,192-row chunks per array) trains one
run, fits the Gaussian and describes the layer's inputs.  Then, for a deleted chunk (`train.zarr/x/c/2/0`, as in the
issue) and a truncated one (`train.zarr/y/c/1/0` cut to half): `snakemake -n`, `secret-moe verify`, each of the three
readers forced to run again (`train_students` through its run's `collect_run`, `fit_gaussian`, `describe_inputs`:
the message, the failed job's log, the seconds), then the rebuild command the message gives and what Snakemake plans
after it.  Prints a transcript and saves it to benchmarks/results/damaged_stores.txt.

    python benchmarks/damaged_stores.py [--folder /tmp/damaged_stores]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _common import machine, save

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [str(Path(sys.executable).with_name("snakemake")), "-s", str(REPO / "Snakefile")]
STORE = "results/activations/tiny/layer1/train.zarr"
RUN = "results/distill/tiny/layer1/activations/mlp_h4/e2_lr0.001_seed0/metrics.json"
MOMENTS = "results/gaussian/tiny/layer1/moments.npz"
STATS = "results/scan/tiny/input_stats/layer1.csv"
TARGETS = (RUN, MOMENTS, STATS)


class Transcript:
    def __init__(self, work: Path) -> None:
        self.work, self.lines = work, []
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "src"), os.environ.get("PYTHONPATH")])),
        }

    def note(self, text: str) -> None:
        self.lines.append(text)

    def run(self, shown: str, command: list[str], keep: str | None = None) -> subprocess.CompletedProcess:
        """Run `command` in the work folder; note the command as typed (`shown`), its exit code and seconds, and its
        output lines that match `keep` (all of them when None)."""
        tick = time.perf_counter()
        done = subprocess.run(command, cwd=self.work, env=self.env, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - tick
        self.note(f"\n$ {shown}\n  exit {done.returncode} after {seconds:.1f} s")
        for line in (done.stdout + done.stderr).splitlines():
            if keep is None or re.search(keep, line):
                self.note("  | " + line)
        return done


def snakemake(*args: str) -> list[str]:
    return [*SNAKEMAKE, "--configfile", "config.yaml", *args]


def setup(work: Path) -> None:
    from secret_moe.testing import save_tiny_model, tiny_config, write_config, write_tiny_corpus

    model = save_tiny_model(work / "tiny-model", "gpt_neox", seed=0)
    corpus = write_tiny_corpus(work, {"train": 2500, "validation": 600}, seed=0)
    config = tiny_config(model, corpus)
    config["corpus"]["max_tokens"] = {"train": 40_000, "validation": 8_000}
    config["corpus"]["validation_lines"] = 600
    write_config(work / "config.yaml", config)


def failed_job(t: Transcript, target: str) -> None:
    """Force the job of `target`; note Snakemake's error lines and the failed job's log."""
    done = t.run(
        f"snakemake --cores 1 --force {target}",
        snakemake("--cores", "1", "--force", target),
        keep=r"^\[\w{3} \w{3} |^rule |Error in rule|StoreDamagedError|Exiting because|RuntimeError|Finished job",
    )
    failed = re.search(r"Error in rule \S+:.*?\n\s+log: (\S+)", done.stdout + done.stderr, re.DOTALL)
    if failed:
        t.note(f"  the failed job's log, {failed.group(1)}:")
        for line in (t.work / failed.group(1)).read_text().splitlines():
            t.note("  > " + line)


def case(t: Transcript, name: str, damage) -> None:
    t.note(f"\n=== {name} ===")
    t.note(damage())
    plan = r"^\S+\s+\d+$|reason:|Nothing to be done"
    t.run("snakemake -n " + " ".join(TARGETS), snakemake("-n", *TARGETS), keep=plan)
    t.run("secret-moe verify", [sys.executable, "-m", "secret_moe.cli", "verify"])
    for target in TARGETS:
        failed_job(t, target)
    rebuild = ["--cores", "1", "--force", STORE]
    t.run("snakemake " + " ".join(rebuild), snakemake(*rebuild), keep=r"Finished job|Error|Nothing")
    t.run("secret-moe verify " + STORE, [sys.executable, "-m", "secret_moe.cli", "verify", STORE])
    t.run("snakemake -n " + " ".join(TARGETS), snakemake("-n", *TARGETS), keep=plan)
    t.run("snakemake --cores 2 " + " ".join(TARGETS), snakemake("--cores", "2", *TARGETS), keep=r"Finished job|Error")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/damaged_stores"))
    args = parser.parse_args()
    shutil.rmtree(args.folder, ignore_errors=True)
    args.folder.mkdir(parents=True)
    setup(args.folder)
    t = Transcript(args.folder)
    t.note(f"damaged_stores: the tiny model, {args.folder}\n{machine()}")
    t.run("snakemake --cores 2 " + " ".join(TARGETS), snakemake("--cores", "2", *TARGETS), keep=r"Finished job|Error")
    store = args.folder / STORE
    t.note("chunks of x: " + ", ".join(sorted(str(p.relative_to(store)) for p in (store / "x" / "c").rglob("*"))))

    def delete() -> str:
        (store / "x" / "c" / "2" / "0").unlink()
        return f"$ rm {STORE}/x/c/2/0"

    def truncate() -> str:
        chunk = store / "y" / "c" / "1" / "0"
        size = chunk.stat().st_size
        os.truncate(chunk, size // 2)
        return f"$ truncate -s {size // 2} {STORE}/y/c/1/0   # from {size:,} bytes"

    case(t, "a deleted chunk", delete)
    case(t, "a truncated chunk", truncate)
    save("damaged_stores", "\n".join(t.lines))


if __name__ == "__main__":
    main()
