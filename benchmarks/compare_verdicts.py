"""Two runs' verdicts side by side, each recomputed from its `runs.csv` under the current rule
(`verdict.ladder_verdict`: the training still to come counted), with the seeds-only intervals, so that a change of
recipe (batch order, a Gaussian draw per seed) reads as what it did to each side's interval.

    python benchmarks/compare_verdicts.py OLD/runs.csv NEW/runs.csv [--names old new] [--confidence 0.95]

Both runs need a budget ladder of three rungs or more.  Prints one line per run, model and MoE student: the
advantage and interval of each side, the seeds-only interval and its width (high / low), and the word.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from secret_moe.verdict import ladder_verdict

COLUMNS = ["model", "student", "advantage_real", "real_low", "real_high", "real_seeds_low", "real_seeds_high"]
COLUMNS += ["advantage_gaussian", "gaussian_low", "gaussian_high", "gaussian_seeds_low", "gaussian_seeds_high"]


def verdict_of(runs_csv: Path, confidence: float) -> pd.DataFrame:
    """The verdict table of one run at its last rung, recomputed from its runs (tolerance only reported: 3%)."""
    runs = pd.read_csv(runs_csv)
    budgets = sorted(int(b) for b in runs.epochs.unique())
    seeds = sorted(int(s) for s in runs.seed.unique())
    table = ladder_verdict(runs, budgets, seeds, confidence, 0.03)
    for side in ("real", "gaussian"):
        table[f"{side}_seeds_width"] = table[f"{side}_seeds_high"] / table[f"{side}_seeds_low"]
    return table.assign(epochs=budgets[-1], seeds=len(seeds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs=2, type=Path, help="two runs.csv files")
    parser.add_argument("--names", nargs=2, default=["first", "second"])
    parser.add_argument("--confidence", type=float, default=0.95)
    args = parser.parse_args()
    tables = [
        verdict_of(path, args.confidence).assign(run=name) for path, name in zip(args.runs, args.names, strict=True)
    ]
    table = pd.concat(tables, ignore_index=True)
    shown = ["run", "epochs", "seeds", *COLUMNS, "real_seeds_width", "gaussian_seeds_width", "margin", "verdict"]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
