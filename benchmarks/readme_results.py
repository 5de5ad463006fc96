"""The README's results table, written from the committed reference runs' tables.

    python benchmarks/readme_results.py           # rewrite the table between README.md's RESULTS markers
    python benchmarks/readme_results.py --check   # exit 1, printing the table, if README.md's differs

One row per reference run (`RUNS`) and row of its `verdict.csv` (a model and layer: the D_act variant, read
from the store's `rows_by_kind_<model>_train.csv`): the budget the verdict was read at (the ladder's last rung,
from `ladder.csv`), the MoE advantage on real activations and on the Gaussian twin (geometric mean over seeds
and its interval, as README "The verdict" writes bounds), what the intervals hold (the training still to come
and the margin between the sides, or, for a table made under the previous rule, its 3% tolerance and the
largest FVU change over the last doubling) and the word.  tests/workflow/test_docs.py checks that README.md
holds exactly this table.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# reference folder, the run's name in the table, the config that made it (in the README's order)
RUNS = [
    ("verdict_run", "decisive", "config/verdict.yaml"),
    ("smollm2_run", "SmolLM2-135M layer 15", "config/smollm2.yaml"),
    ("verdict_run_lr3e-3", "decisive, one rate (3e-3)", "config/verdict.yaml at 9ae1c23"),
    ("default_run", "default", "config.yaml"),
]
BEGIN, END = "<!-- BEGIN RESULTS", "<!-- END RESULTS -->"
COLUMNS = [
    "run",
    "D_act",
    "epochs (last rung), seeds",
    "MoE advantage, real",
    "Gaussian",
    "what the intervals hold",
    "verdict",
]
HEADER = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def interval_text(mean: float, low: float, high: float) -> str:
    """`1.11 [1.05, 1.17]` measured, `1.34 [1.26, ∞)` a lower bound, `0.80 (0, 0.95]` an upper bound,
    `1.26 (0, ∞)` bounds only (both at once); the mean alone where there is no interval (one seed)."""
    if math.isnan(mean):
        return "–"
    if math.isnan(low) or math.isnan(high):
        return f"{mean:.2f}"
    left = "(0" if low == 0 else f"[{low:.2f}"
    right = "∞)" if math.isinf(high) else f"{high:.2f}]"
    return f"{mean:.2f} {left}, {right}"


def d_act(run: Path, model: str) -> str:
    """What the model's stores hold: non-padding tokens, or padded positions kept (with their share)."""
    table = run / f"rows_by_kind_{model}_train.csv"
    if not table.is_file():
        return f"`{model}`"
    pads = [row for row in _rows(table) if row["kind"] == "pad" and int(row["rows"])]
    return f"padded positions kept ({float(pads[0]['row_share']):.0%} pads)" if pads else "non-padding tokens"


def epochs_read_at(run: Path, row: dict[str, str]) -> str:
    """The budget the verdict row was read at: the ladder's last rung, else the budget check's shorter budget."""
    key = (row["model"], row["layer"], row["student"])
    for name, column in (("ladder.csv", "epochs"), ("budget_check.csv", "epochs")):
        if (run / name).is_file():
            found = [int(r[column]) for r in _rows(run / name) if (r["model"], r["layer"], r["student"]) == key]
            found = found or [int(r[column]) for r in _rows(run / name) if r["model"] == row["model"]]
            if found:
                return str(max(found))
    return "?"


def convergence_text(row: dict[str, str]) -> str:
    """`5.4%: MoE, real` (the student that moved most, and on which data), from the verdict's note."""
    change = float(row["max_fvu_change"]) if row["max_fvu_change"] else math.nan
    if math.isnan(change):
        return row["convergence"]
    moved = re.match(r"no: (\S+) on (\w+) moved", row["convergence"])
    if not moved:
        return f"{change:.1%}: every student within the tolerance"
    student, data = moved.groups()
    who = "MoE" if student.startswith("moe") else student.replace("mlp_h", "MLP ")
    return f"{change:.1%}: {who}, {'real' if data == 'activations' else 'Gaussian'}"


def rule_text(row: dict[str, str]) -> str:
    """`seeds + training still to come, margin 0.44` under the rule that counts the remaining training (a
    `margin` column), `seeds; previous rule: 3% FVU tolerance (5.4%: MoE, real)` for a table made before it."""
    if row.get("margin", ""):
        return f"seeds + training still to come; margin {float(row['margin']):.2f}"
    return f"seeds; previous rule: 3% FVU tolerance ({convergence_text(row)})"


def results_table(reference: Path = REPO / "reference") -> str:
    """The README's results table (header and one line per reference run and verdict row)."""
    lines = list(HEADER)
    for folder, name, config in RUNS:
        run = reference / folder
        for row in _rows(run / "verdict.csv"):
            real, gaussian = (
                interval_text(*(float(row[c]) for c in (f"advantage_{side}", f"{side}_low", f"{side}_high")))
                for side in ("real", "gaussian")
            )
            word = f"**{row['verdict']}**" if row["verdict"] != "undecided" else row["verdict"]
            cells = [
                f"[{name}](reference/{folder}/) (`{config}`)",
                d_act(run, row["model"]),
                f"{epochs_read_at(run, row)}, {row['seeds']}",
                real,
                gaussian,
                rule_text(row),
                word,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def readme_block(text: str) -> str:
    """What README.md holds between the line of its BEGIN RESULTS marker and its END RESULTS marker."""
    start = text.index("\n", text.index(BEGIN)) + 1
    return text[start : text.index(END)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if README.md differs")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args()
    text, table = args.readme.read_text(), results_table()
    if args.check:
        if readme_block(text) != table:
            sys.stdout.write(table)
            sys.exit(f"{args.readme}: the results table differs from reference/ (above: what it should be)")
        return
    start = text.index("\n", text.index(BEGIN)) + 1
    args.readme.write_text(text[:start] + table + text[text.index(END) :])


if __name__ == "__main__":
    main()
