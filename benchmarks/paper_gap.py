"""The gap to the paper, measured: the paper's Gemma-3-270M layer 9 advantage at 64 active neurons beside the
package's, as each difference between the two is removed where a CPU allows it.

    python benchmarks/paper_gap.py reference/default_run reference/verdict_run_96ep [more run folders] \
        --out reference/paper_gap

Each run folder is a reference run's tables (`copy_reference.py`): with `runs.csv` the advantage is computed at
every rung and for every MoE size it trained (geometric mean over seeds, `aggregate.advantage_per_seed`; each FVU
the best over the rungs up to that one, `remaining.envelope`, as the verdict reads it);
without it, from `ladder.csv` (the main comparison's MoE only).  The paper's points are computed from its
published FVUs (`reference/paper_fvu_summary.csv`) by the same log-log interpolation on its own MLP curve.
Writes `paper_gap.csv` (one row per source, D_act, m and budget), `mlp_curves.csv` (the MLP FVUs of both at the
widths they share: whether the two MLP baselines are alike) and `paper_gap.png`.  One seed per point is allowed:
the table says how many; it explains, it does not decide.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from secret_moe.aggregate import advantage_per_seed, best_per_seed, mlp_width_to_match  # noqa: E402
from secret_moe.remaining import envelope  # noqa: E402
from secret_moe.students.spec import parse_student  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PAPER = REPO / "reference" / "paper_fvu_summary.csv"
HF_ID, LAYER, ACTIVE = "google/gemma-3-270m", 9, 64
DATA = ("activations", "gaussian")


def paper_points(paper: pd.DataFrame) -> pd.DataFrame:
    """The paper's advantage at 64 active neurons, low-rank router, per m and data (padded Wikitext, 100 epochs,
    best of lr 1e-4 / 3e-4 / 1e-3)."""
    mine = paper[(paper.model == HF_ID) & (paper.layer == LAYER)]
    rows = []
    for m in sorted(mine[mine.family == "moe_lowrank"].num_experts.astype(int).unique()):
        row = {"source": "paper", "d_act": "padded positions kept (Wikitext)", "m": m, "epochs": 100, "seeds": 1}
        for data in DATA:
            mlp = mine[(mine.family == "mlp") & (mine.data == data)]
            moe = mine[(mine.family == "moe_lowrank") & (mine.data == data) & (mine.active_neurons == ACTIVE)]
            moe = moe[moe.num_experts.astype(int) == m]
            fvu = float(moe.best_fvu.iloc[0])
            curve = mlp.assign(kind="mlp")[["model", "layer", "data", "kind", "active_neurons", "best_fvu"]]
            width = mlp_width_to_match(curve, fvu, HF_ID, LAYER, data)
            row |= {f"moe_fvu_{data}": fvu, f"advantage_{data}": width / ACTIVE}
        rows.append(row)
    return pd.DataFrame(rows)


def _d_act(run: Path, model: str) -> str:
    """Non-padding tokens, or padded positions kept, from the run's rows_by_kind table."""
    table = run / f"rows_by_kind_{model}_train.csv"
    if not table.is_file():
        return model
    kinds = pd.read_csv(table)
    pads = kinds[(kinds.kind == "pad") & (kinds.rows > 0)]
    return "padded positions kept" if len(pads) else "non-padding tokens"


def package_points(run: Path) -> pd.DataFrame:
    """The package's advantage per model (D_act), MoE size and rung of one reference run."""
    if not (run / "runs.csv").is_file():
        return _from_ladder(run)
    runs = pd.read_csv(run / "runs.csv")
    budgets = sorted(int(b) for b in runs.epochs.unique())
    rows = []
    for i, epochs in enumerate(budgets):
        best = envelope(runs, budgets[: i + 1])  # each FVU the best over the rungs so far, as the verdict reads it
        per_seed = advantage_per_seed(best)
        per_seed = per_seed[per_seed.active_neurons == ACTIVE]
        for (model, student), group in per_seed.groupby(["model", "student"]):
            row = {"source": run.name, "d_act": _d_act(run, model), "m": _experts(student), "epochs": epochs}
            row["seeds"] = int(group.seed.nunique())
            for data in DATA:
                side = group[group.data == data]
                values = side.advantage.where(side.advantage.notna(), side.advantage_bound)
                row[f"advantage_{data}"] = float(np.exp(np.log(values).mean()))
                fvus = best[(best.model == model) & (best.student == student) & (best.data == data)].best_fvu
                row[f"moe_fvu_{data}"] = float(fvus.mean())
            rows.append(row)
    return pd.DataFrame(rows)


def _experts(student: str) -> int:
    return parse_student(student)["experts"]


def _from_ladder(run: Path) -> pd.DataFrame:
    ladder = pd.read_csv(run / "ladder.csv")
    return pd.DataFrame(
        {
            "source": run.name,
            "d_act": [_d_act(run, model) for model in ladder.model],
            "m": [_experts(s) for s in ladder.student],
            "epochs": ladder.epochs,
            "seeds": ladder.seeds,
            "advantage_activations": ladder.advantage_real,
            "advantage_gaussian": ladder.advantage_gaussian,
        }
    )


def mlp_curves(paper: pd.DataFrame, runs: list[Path]) -> pd.DataFrame:
    """Both MLP baselines at the widths they share: the paper's best FVU (100 epochs, best lr) and the package's
    mean over seeds at each run's last rung, per D_act and data."""
    mine = paper[(paper.model == HF_ID) & (paper.layer == LAYER) & (paper.family == "mlp")]
    rows = [
        {
            "source": "paper",
            "d_act": "padded positions kept (Wikitext)",
            "epochs": 100,
            "data": r.data,
            "width": int(r.active_neurons),
            "fvu": r.best_fvu,
        }
        for r in mine.itertuples()
    ]
    for run in runs:
        if not (run / "runs.csv").is_file():
            continue
        table = pd.read_csv(run / "runs.csv")
        best = best_per_seed(table, table.epochs.max())
        best = best[best.kind == "mlp"].groupby(["model", "data", "active_neurons"]).best_fvu.mean().reset_index()
        rows += [
            {
                "source": run.name,
                "d_act": _d_act(run, r.model),
                "epochs": int(table.epochs.max()),
                "data": r.data,
                "width": int(r.active_neurons),
                "fvu": r.best_fvu,
            }
            for r in best.itertuples()
        ]
    curves = pd.DataFrame(rows)
    shared = set(curves[curves.source != "paper"].width)
    return curves[curves.width.isin(shared)].sort_values(["data", "width", "source"], ignore_index=True)


def figure(table: pd.DataFrame, out: Path) -> None:
    """Advantage against the budget: each (run, D_act, m) a line, real solid, Gaussian dashed; the paper's points
    at 100 epochs as stars."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2), sharey=True)
    ours = table[table.source != "paper"]
    keys = sorted(set(zip(ours.source, ours.m, strict=True)), key=str)
    colours = dict(zip(keys, plt.get_cmap("tab10").colors, strict=False))  # one colour per line, in both panels
    labels: dict[str, object] = {}
    for ax, d_act in zip(axes, ("non-padding tokens", "padded positions kept"), strict=True):
        for (source, m), line in ours[ours.d_act == d_act].groupby(["source", "m"]):
            line = line.sort_values("epochs")
            colour = colours[(source, m)]
            label = f"{source}, m={m} ({int(line.seeds.max())} seeds)"
            labels[label] = ax.plot(line.epochs, line.advantage_activations, marker="o", color=colour)[0]
            ax.plot(line.epochs, line.advantage_gaussian, marker="o", ls="--", color=colour, alpha=0.6)
        for row in table[table.source == "paper"].itertuples():
            ax.scatter([100], [row.advantage_activations], marker="*", s=120, color="black", zorder=3)
            ax.scatter([100], [row.advantage_gaussian], marker="*", s=120, color="grey", zorder=3)
            ax.annotate(
                f"paper m={row.m:,}",
                (100, row.advantage_activations),
                fontsize=7,
                xytext=(4, 0),
                textcoords="offset points",
            )
        ax.axhline(1, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("training budget (epochs)")
        ax.set_title(f"package: {d_act}; paper: padded Wikitext")
    axes[0].set_ylabel("MoE advantage at 64 active (solid real, dashed Gaussian)")
    fig.legend(list(labels.values()), list(labels), fontsize=7, loc="lower center", ncol=3, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(out, dpi=130)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="reference run folders (their tables)")
    parser.add_argument("--out", type=Path, default=REPO / "reference" / "paper_gap")
    parser.add_argument("--paper", type=Path, default=PAPER)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    paper = pd.read_csv(args.paper)
    table = pd.concat([paper_points(paper)] + [package_points(run) for run in args.runs], ignore_index=True)
    table.to_csv(args.out / "paper_gap.csv", index=False, float_format="%.4g")
    mlp_curves(paper, args.runs).to_csv(args.out / "mlp_curves.csv", index=False, float_format="%.4g")
    figure(table, args.out / "paper_gap.png")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
