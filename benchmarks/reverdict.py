"""A reference run's verdict recomputed from its committed `runs.csv` under the current rule, for a run whose
stores and run folders are gone: rewrites `verdict.csv` and `ladder.csv` as rule aggregate_runs writes them (the
ladder's budgets and the seeds read from `runs.csv`) and redraws `verdict.png` from them and
`advantage_by_seed.csv`.

    python benchmarks/reverdict.py reference/verdict_run_lr3e-3 [--confidence 0.95] [--tolerance 0.03]

Only for ladder runs (three rungs or more); the other tables do not depend on the rule.  On the code that made a
run it rewrites that run's `verdict.csv` and `ladder.csv` byte for byte (checked on reference/verdict_run_lr3e-3
when the unbounded-MLP rule changed, docs/convergence.md).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import pandas as pd

from secret_moe.steps.figures import plot_verdict
from secret_moe.verdict import final_rung, ladder_table


def reverdict(folder: Path, confidence: float, tolerance: float) -> pd.DataFrame:
    runs = pd.read_csv(folder / "runs.csv")
    budgets = sorted(int(b) for b in runs.epochs.unique())
    seeds = sorted(int(s) for s in runs.seed.unique())
    ladder = ladder_table(runs, budgets, seeds, confidence, tolerance)
    verdict = final_rung(ladder, budgets[-1])
    ladder.to_csv(folder / "ladder.csv", index=False)
    verdict.to_csv(folder / "verdict.csv", index=False)
    with tempfile.TemporaryDirectory() as scratch:  # the reference keeps the PNG only
        pdf = str(Path(scratch) / "verdict.pdf")
        plot_verdict(
            str(folder / "verdict.csv"), str(folder / "advantage_by_seed.csv"), pdf=pdf, png=str(folder / "verdict.png")
        )
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a reference run's folder (its runs.csv)")
    parser.add_argument("--confidence", type=float, default=0.95, help="verdict.confidence")
    parser.add_argument("--tolerance", type=float, default=0.03, help="experiments.budget_check.tolerance")
    args = parser.parse_args()
    verdict = reverdict(args.folder, args.confidence, args.tolerance)
    print(verdict[["model", "layer", "advantage_real", "real_low", "real_high", "gaussian_low", "gaussian_high"]])
    print(verdict[["model", "margin", "verdict"]])


if __name__ == "__main__":
    main()
