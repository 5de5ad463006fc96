"""The training-recipe sweep: which recipe brings every student of the comparison to convergence on a CPU.

Each recipe is a `distill` setting (schedule, learning rates, MoE size); for each recipe and data (real
activations, Gaussian control) one bundle trains every student at every learning rate through the package's
own distillation step (`steps.distill.train_students`), in its own process, two at a time.  A `wsd` recipe
gives its whole budget ladder from one run (cooldown branches); a `cosine` recipe trains one run per budget.

    python benchmarks/sweep_recipe.py --train results/activations/gemma3-270m/layer9/train.zarr \
        --validation results/activations/gemma3-270m/layer9/validation.zarr \
        --gaussian-train results/gaussian/gemma3-270m/layer9/train.zarr \
        --gaussian-validation results/gaussian/gemma3-270m/layer9/validation.zarr \
        --out benchmarks/out/sweep --recipes wsd_lr3e-3

writes every run's metrics under --out, then `sweep.csv` (recipe, data, student, budget: best FVU over the
learning rates, its learning rate and epoch), `sweep_table.md` (the FVU ladder and each budget doubling's
relative change) and `sweep.png` (FVU against budget, one line per student, real and Gaussian side by side).
`--summarise` rebuilds the table and figure from the metrics already there; `--keep reference/recipe_sweep/sweep.csv`
adds an earlier sweep's rows for the recipes not rerun.

The levers of issue 30 (`LEVERS`: initialisation from the data, lazy Adam, the experts' and router's own rate, batch
size, rows per store) are recipes on a ladder of three rungs (6 / 12 / 24 epochs unless named); a recipe with `rows`
trains on a sealed copy of the store's first rows (`prefix_store`: what a smaller capture keeps), made in its
folder and removed after; `--seeds 0 1` trains every recipe at each seed (a store path may
hold `{seed}`: each seed's own Gaussian sample), and `levers.csv` / the table's first section give, per recipe and
data, each student's FVU at every rung (mean over seeds), its largest change over the last doubling, the MoE's
experts no validation row selects (dead) and the wall seconds per epoch of the bundle.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine  # noqa: E402

# recipe name -> the distill keys it sets (others from the default config); `epochs` is the longest budget
STUDENTS = ["mlp_h64", "mlp_h128", "moe_lowrank_r128_m1024_s32_k32"]
RECIPES: dict[str, dict[str, Any]] = {
    # warmup-stable-decay: the ladder 12 / 24 / 48 / 96 epochs from one run
    "wsd_lr3e-3": {
        "schedule": {"kind": "wsd", "warmup_epochs": 1, "cooldown_fraction": 0.2, "rungs": 4},
        "epochs": 96,
        "learning_rates": [0.003],
        "students": STUDENTS,
    },
    "wsd_lr1e-3": {
        "schedule": {"kind": "wsd", "warmup_epochs": 1, "cooldown_fraction": 0.2, "rungs": 3},
        "epochs": 48,
        "learning_rates": [0.001],
        "students": STUDENTS,
    },
    # the rate that fails at 48 epochs under cosine decay (issue 19), under warmup-stable-decay
    "wsd_lr1e-2": {
        "schedule": {"kind": "wsd", "warmup_epochs": 1, "cooldown_fraction": 0.2, "rungs": 3},
        "epochs": 48,
        "learning_rates": [0.01],
        "students": STUDENTS,
    },
    # fewer experts: each expert gets k/m = 1/8 of a batch instead of 1/32
    "wsd_m256": {
        "schedule": {"kind": "wsd", "warmup_epochs": 1, "cooldown_fraction": 0.2, "rungs": 3},
        "epochs": 48,
        "learning_rates": [0.003],
        "students": ["moe_lowrank_r128_m256_s32_k32"],
    },
}
# The levers of issue 30, each against `r24_base` (today's CPU recipe: wsd at 3e-3, a full row permutation each
# epoch) on the ladder 6 / 12 / 24 epochs; `distill` holds the keys a recipe changes from BASE.
LADDER_24 = {"kind": "wsd", "warmup_epochs": 1, "cooldown_fraction": 0.2, "rungs": 3}
LEVERS: dict[str, dict[str, Any]] = {
    "r24_base": {},
    "r24_data_init": {"init": "data"},
    "r24_lazy_adam": {"optimizer": "lazy_adam"},
    "r24_experts_x3": {"lr_scale": {"router": 3.0, "experts": 3.0}},
    "r24_batch256": {"batch_size": 256},
    "r24_batch256_lr1e-3": {"batch_size": 256, "learning_rates": [0.001]},
    "r24_data_init_batch256": {"init": "data", "batch_size": 256},
    # reviving dead experts (most of the 1,024 are dead at the end without it: `dead_experts`)
    "r24_revive_trunk": {"revive": "trunk"},
    "r24_data_init_revive_trunk": {"init": "data", "revive": "trunk"},
    "r24_data_init_revive": {"init": "data", "revive": "first_rung"},
    # the output layer refit by least squares after every epoch (the closed-form refit), on the finalist
    "r24_data_init_revive_refit": {"init": "data", "revive": "first_rung", "refit": "epoch"},
    # the learning-rate grid under the data initialisation (issue 27 item 2: at least one rate above 3e-3)
    "r24_data_init_lr1e-3": {"init": "data", "learning_rates": [0.001]},
    "r24_data_init_lr1e-2": {"init": "data", "learning_rates": [0.01]},
    # rows per store on the adopted recipe: the first `rows` training rows (what a smaller capture keeps), at the
    # scan's size (24k rows, 24 epochs) and at the same number of steps as 100k rows x 24 epochs
    "r24_data_init_revive_rows24k": {"init": "data", "revive": "first_rung", "rows": 24_000},
    "r96_data_init_revive_rows24k": {"init": "data", "revive": "first_rung", "rows": 24_000, "epochs": 96},
    "r48_data_init_revive_rows50k": {"init": "data", "revive": "first_rung", "rows": 50_000, "epochs": 48},
}
NOT_DISTILL = ("learning_rates", "rows", "epochs")  # a lever's keys that are not distill settings
for _name, _change in LEVERS.items():
    RECIPES[_name] = {
        "schedule": LADDER_24,  # three rungs: epochs / 4, epochs / 2, epochs
        "epochs": _change.get("epochs", 24),
        "learning_rates": _change.get("learning_rates", [0.003]),
        "students": STUDENTS,
        "distill": {"group_chunks": 0, **{k: v for k, v in _change.items() if k not in NOT_DISTILL}},
        **({"rows": _change["rows"]} if "rows" in _change else {}),
    }
BASE = {"batch_size": 1024, "group_chunks": 8, "in_memory": True}
TOLERANCE = 0.03  # the budget check's (config.yaml experiments.budget_check.tolerance)


def _runs(recipe: str, data: str, seed: int = 0) -> list[dict[str, Any]]:
    spec = RECIPES[recipe]
    return [
        {
            "model": "gemma3-270m",
            "layer": 9,
            "data": data,
            "student": student,
            "epochs": spec["epochs"],
            "lr": lr,
            "seed": seed,
        }
        for student in spec["students"]
        for lr in spec["learning_rates"]
    ]


def worker(recipe: str, data: str, seed: str, train: str, validation: str, out: str) -> None:
    from secret_moe.steps.distill import train_students

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    spec = RECIPES[recipe]
    distill = {**BASE, **spec.get("distill", {}), "schedule": spec["schedule"]}
    runs = _runs(recipe, data, int(seed))
    rungs = Path(out, "rungs")
    rungs.mkdir(parents=True, exist_ok=True)
    Path(out, "job.json").write_text(json.dumps({"recipe": recipe, "data": data, "seed": int(seed)}))

    def save_rung(budget: int, histories: list[list[dict[str, Any]]]) -> None:
        # each rung as soon as it is done: a sweep cut short still reports its finished rungs
        done = {f"{run['student']}_lr{run['lr']}": history for run, history in zip(runs, histories, strict=True)}
        (rungs / f"e{budget}.json").write_text(json.dumps(done))

    with tempfile.TemporaryDirectory(dir=out) as scratch:
        if "rows" in spec:
            train = prefix_store(train, Path(scratch, "train.zarr"), spec["rows"])
        tick = time.perf_counter()
        train_students(
            train, validation, out, runs=runs, distill=distill, seed=0, device="cpu", threads=1, on_rung=save_rung
        )
    Path(out, "wall_seconds.json").write_text(json.dumps({"wall_seconds": time.perf_counter() - tick}))


def prefix_store(source: str, target: Path, rows: int) -> str:
    """A sealed copy of the first `rows` rows of the store at `source` (every array, its attributes with `rows`
    set), as a capture that stopped there would have written them; returns its path."""
    from secret_moe.store import create_store, finish_store, open_store, partial_path

    group = open_store(source)
    if rows > group["x"].shape[0]:
        raise ValueError(f"{source}: {rows} rows asked for, the store holds {group['x'].shape[0]}")
    d_model, chunk_rows = group["x"].shape[1], group["x"].chunks[0]
    row_arrays = {name: str(array.dtype) for name, array in group.arrays() if name not in ("x", "y")}
    partial = partial_path(target)
    copy = create_store(partial, rows, d_model, chunk_rows, {**dict(group.attrs), "rows": rows}, row_arrays)
    for name, array in group.arrays():
        copy[name][:] = array[:rows]
    finish_store(partial, target)
    return str(target)


def _job(rung_file: Path) -> dict[str, Any]:
    """recipe, data and seed of a worker's folder (its job.json; before seeds existed: recipe/data, seed 0)."""
    job_file = rung_file.parents[1] / "job.json"
    if job_file.is_file():
        return json.loads(job_file.read_text())
    return {"recipe": rung_file.parts[-4], "data": rung_file.parts[-3], "seed": 0}


def _rows(out: Path) -> list[dict[str, Any]]:
    """One row per recipe, data, run and finished rung (from the rung files each worker writes as it goes)."""
    rows = []
    for rung_file in sorted(out.glob("**/rungs/e*.json")):
        job = _job(rung_file)
        budget = int(rung_file.stem[1:])
        for member, history in json.loads(rung_file.read_text()).items():
            student, lr = member.rsplit("_lr", 1)
            fvus = [h["val_fvu"] for h in history]
            best = min(range(len(fvus)), key=fvus.__getitem__)
            rows.append(
                {
                    "recipe": job["recipe"],
                    "data": job["data"],
                    "seed": job["seed"],
                    "student": student,
                    "lr": float(lr),
                    "budget": budget,
                    "best_fvu": fvus[best],
                    "best_epoch": best + 1,
                    "final_fvu": fvus[-1],
                }
            )
    return rows


def summarise(out: Path, keep: Path | None = None) -> pd.DataFrame:
    runs = pd.DataFrame(_rows(out))
    if keep is not None:
        # an earlier sweep's rows (its sweep.csv) for the recipes this one did not rerun
        earlier = pd.read_csv(keep)
        earlier = earlier[~earlier.recipe.isin(set(runs.recipe))].drop(columns="change_from_half")
        runs = pd.concat([runs, earlier], ignore_index=True)
    if "seed" not in runs:
        runs["seed"] = 0
    runs["seed"] = runs.seed.fillna(0).astype(int)
    best = runs.loc[runs.groupby(["recipe", "data", "student", "budget", "seed"]).best_fvu.idxmin()]
    best = best.sort_values(["recipe", "data", "student", "seed", "budget"], ignore_index=True)
    best["change_from_half"] = best.groupby(["recipe", "data", "student", "seed"]).best_fvu.transform(
        lambda fvu: (fvu.shift(1) - fvu).abs() / fvu
    )
    best.to_csv(out / "sweep.csv", index=False)
    advantage = _advantage(best)
    advantage.to_csv(out / "sweep_advantage.csv", index=False)
    lines = [f"Machine: {machine()}", ""]
    levers = _levers(best, out)
    if not levers.empty:
        levers.to_csv(out / "levers.csv", index=False)
        lines += ["### Levers (mean over seeds; change: the largest over seeds between the last two rungs)", ""]
        lines += [levers.to_markdown(index=False, floatfmt=".4g"), ""]
    for (recipe, data), group in best.groupby(["recipe", "data"], sort=True):
        budgets = sorted(group.budget.unique())
        lines += [f"### {recipe}, {data}", "", "| student | " + " | ".join(f"{b} epochs" for b in budgets) + " |"]
        lines.append("|---" * (len(budgets) + 1) + "|")
        for (student, seed), rows in group.groupby(["student", "seed"], sort=True):
            cells = []
            for _, row in rows.sort_values("budget").iterrows():
                change = "" if pd.isna(row.change_from_half) else f" ({row.change_from_half:.1%})"
                cells.append(f"{row.best_fvu:.3f}{change} lr {row.lr:g} ep {row.best_epoch}")
            lines.append(f"| {student} seed {seed} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### MoE advantage (matching MLP width / active neurons, the package's rule)", ""]
    lines += ["| recipe | student | seed | budget | real | Gaussian |", "|---|---|---|---|---|---|"]
    for (recipe, student, seed, budget), rows in advantage.groupby(["recipe", "student", "seed", "epochs"]):
        cells = {row.data: _advantage_cell(row) for _, row in rows.iterrows()}
        lines.append(
            f"| {recipe} | {student} | {seed} | {budget} | {cells.get('activations', '')} | "
            f"{cells.get('gaussian', '')} |"
        )
    lines.append("")
    (out / "sweep_table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _figure(best, out / "sweep.png")
    return best


def _levers(best: pd.DataFrame, out: Path) -> pd.DataFrame:
    """Per recipe of the ladder 6 / 12 / 24 (LEVERS), data and student: FVU at each rung (mean over seeds), the
    largest change over the last doubling, the first rung within TOLERANCE of the one before on every seed, the
    seeds, the MoE's dead experts (share of m no validation row selects, mean over seeds) and the bundle's wall
    seconds per epoch trained (trunk and cooldown branches, mean)."""
    from secret_moe.schedule import Schedule

    rows = []
    for (recipe, data, student), group in best[best.recipe.isin(LEVERS)].groupby(["recipe", "data", "student"]):
        row: dict[str, Any] = {"recipe": recipe, "data": data, "student": student, "seeds": group.seed.nunique()}
        for budget, rung in group.groupby("budget"):
            row[f"fvu_{budget}"] = rung.best_fvu.mean()
        last = group[group.budget == group.budget.max()]
        row["last_change_max"] = last.change_from_half.max()
        # the first rung whose change from the rung before is within the tolerance on every seed
        changes = group.groupby("budget").change_from_half.max()
        within = changes[changes <= TOLERANCE]
        row["within_3pct_at"] = int(within.index.min()) if len(within) else None
        dead, seconds = [], []
        for seed in group.seed.unique():
            folder = out / recipe / data / f"s{seed}"
            for metrics in folder.glob(f"{student}_lr*/metrics.json"):
                usage = json.loads(metrics.read_text()).get("router_usage")
                if usage:
                    dead.append(1 - usage["all"]["distinct_experts"] / parse_experts(student))
            wall = folder / "wall_seconds.json"
            if wall.is_file():
                schedule, budgets = Schedule(**RECIPES[recipe]["schedule"]), sorted(group.budget.unique())
                epochs = budgets[-1] + sum(b - schedule.cooldown_start(b) for b in budgets[:-1])
                seconds.append(json.loads(wall.read_text())["wall_seconds"] / epochs)
        row["dead_experts"] = sum(dead) / len(dead) if dead else None
        row["seconds_per_epoch"] = sum(seconds) / len(seconds) if seconds else None
        rows.append(row)
    return pd.DataFrame(rows)


def parse_experts(student: str) -> int:
    from secret_moe.students import parse_student

    return parse_student(student)["experts"]


def _advantage(best: pd.DataFrame) -> pd.DataFrame:
    """Per recipe, MoE student and budget: its advantage on each data, from the MLPs of the same recipe and
    budget (`aggregate.advantage_per_seed`: log-log interpolation, a bound beyond the measured widths)."""
    from secret_moe.aggregate import advantage_per_seed
    from secret_moe.students import active_neurons, parse_student

    tables = []
    for (recipe, budget), group in best.groupby(["recipe", "budget"], sort=True):
        specs = group.student.map(parse_student)
        points = group.assign(
            model="gemma3-270m",
            layer=9,
            kind=specs.map(lambda spec: spec["kind"]),
            active_neurons=specs.map(active_neurons),
            families="main",
        )
        tables.append(advantage_per_seed(points).assign(recipe=recipe, epochs=budget))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _advantage_cell(row: pd.Series) -> str:
    if row.bound == "lower":
        return f">= {row.advantage_bound:.2f}"
    if row.bound == "upper":
        return f"<= {row.advantage_bound:.2f}"
    return f"{row.advantage:.2f}"


def _figure(best: pd.DataFrame, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    grid = sns.relplot(
        data=best,
        x="budget",
        y="best_fvu",
        hue="student",
        style="recipe",
        col="data",
        kind="line",
        markers=True,
        height=3.5,
        facet_kws={"sharey": True},
    )
    grid.set(xscale="log", xlabel="Budget, epochs (log scale)", ylabel="Validation FVU (best over lr and epochs)")
    budgets = sorted(best.budget.unique())
    titles = {"activations": "real activations", "gaussian": "Gaussian control"}
    for data, ax in grid.axes_dict.items():
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.set_title(titles.get(data, data))
    grid.savefig(target, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", nargs=6, metavar=("RECIPE", "DATA", "SEED", "TRAIN", "VALIDATION", "OUT"))
    parser.add_argument("--train")
    parser.add_argument("--validation")
    parser.add_argument("--gaussian-train")
    parser.add_argument("--gaussian-validation")
    parser.add_argument("--out", default="benchmarks/out/sweep")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds of every recipe (seed 0 first)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--summarise", action="store_true", help="only rebuild the table and figure")
    parser.add_argument("--keep", type=Path, help="an earlier sweep.csv whose recipes this sweep did not rerun")
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    out = Path(args.out)
    if not args.summarise:
        stores = {
            "activations": (args.train, args.validation),
            "gaussian": (args.gaussian_train, args.gaussian_validation),
        }
        jobs = []
        for seed in args.seeds:
            for recipe in args.recipes:
                for data, (train, validation) in stores.items():
                    target = out / recipe / data / f"s{seed}"
                    if (target / "wall_seconds.json").is_file():
                        continue  # finished: a rerun resumes where it stopped
                    # a store path may hold {seed}: the Gaussian sample of each seed (gaussian.draw_per_seed)
                    jobs.append([recipe, data, str(seed), train.format(seed=seed), validation.format(seed=seed)])
                    jobs[-1].append(str(target))

        def run(job: list[str]) -> None:
            import subprocess

            Path(job[-1]).parent.mkdir(parents=True, exist_ok=True)
            with open(f"{job[-1]}.log", "w") as log:
                subprocess.run([sys.executable, __file__, "--worker", *job], check=True, stderr=log, stdout=log)

        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(run, jobs))
    summarise(out, args.keep)


if __name__ == "__main__":
    main()
