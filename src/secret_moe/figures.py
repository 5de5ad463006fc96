"""Figures (seaborn), each saved as PDF and PNG from the results tables; every function returns its figure.

Axis labels are words (not column names), with "(log scale)" on logarithmic axes."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from secret_moe.aggregate import student_label
from secret_moe.students import active_neurons, parse_student

sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
DATA_ORDER = ["activations", "gaussian"]
DATA_TITLES = {"activations": "real activations", "gaussian": "Gaussian control"}
BOUND_REACH = 1.3  # how far the bar of a bound's open side reaches, as a factor of its value


def plain_number(value: float, _position: int) -> str:
    """A tick label without scientific notation or offsets (for FuncFormatter)."""
    return f"{value:g}"


def bound_marker(low: float, high: float) -> str:
    """▲ for a lower bound (open top: inf), ▼ for an upper bound (open bottom: 0), a dot for an interval
    (verdict.side_interval gives the open sides)."""
    return "^" if high == math.inf else "v" if low == 0 else "o"


def bound_ends(mean: float, low: float, high: float) -> tuple[float, float]:
    """The drawn ends of an interval: a bound's open side is a short bar BOUND_REACH from the mean."""
    return mean / BOUND_REACH if low == 0 else low, mean * BOUND_REACH if high == math.inf else high


def _save(fig: plt.Figure, pdf: str | Path, png: str | Path) -> None:
    fig.tight_layout()
    fig.savefig(pdf)
    fig.savefig(png, dpi=150)
    plt.close(fig)


def _log2_axis(ax: plt.Axes) -> None:
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("Active neurons (log scale)")
    ax.set_ylabel("Validation FVU (log scale)")


def by_size(students: list[str]) -> list[str]:
    """Student names by active neurons, the dense MLP before MoEs of the same size, then by name."""

    def key(name: str) -> tuple[int, bool, str]:
        spec = parse_student(name)
        return active_neurons(spec), spec["kind"] != "mlp", name

    return sorted(set(students), key=key)


def fvu_vs_active(best: pd.DataFrame, title: str, pdf: str, png: str) -> plt.Figure:
    """FVU vs active neurons: MLP vs MoE (one line per router and expert count), real | Gaussian."""
    main = best[best.families.str.contains("main")].copy()
    main["student"] = main.apply(student_label, axis=1)
    data = [d for d in DATA_ORDER if d in set(main.data)]
    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], data, strict=False):
        sns.lineplot(
            main[main.data == name],
            x="active_neurons",
            y="best_fvu",
            hue="student",
            style="student",
            markers=True,
            dashes=False,
            ax=ax,
        )
        ax.set_title(DATA_TITLES[name])
    for ax in axes[0]:  # after every panel is drawn: a shared log axis would make seaborn average in log space
        _log2_axis(ax)
    fig.suptitle(title)
    _save(fig, pdf, png)
    return fig


def router_comparison(best: pd.DataFrame, title: str, pdf: str, png: str) -> plt.Figure:
    """Low-rank (by rank) vs full-rank routing at equal active neurons, real and Gaussian."""
    sub = best[best.families.str.contains("router_rank")].copy()
    names = {"fullrank": "full rank", "lowrank": "low rank {}", "product_key": "product key {}"}
    sub["router"] = sub.apply(
        lambda r: names[r.router].format(int(r["rank"]) if r["rank"] == r["rank"] else ""), axis=1
    )
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.barplot(
        sub, x="router", y="best_fvu", hue="data", hue_order=[d for d in DATA_ORDER if d in set(sub.data)], ax=ax
    )
    ax.set_ylabel("Validation FVU")
    ax.set_xlabel("Router (MoE students with s = k; bars average over sizes)")
    ax.set_title(title)
    _save(fig, pdf, png)
    return fig


def _fvu_line(sub: pd.DataFrame, x: str, xlabel: str, title: str, **lineplot) -> plt.Axes:
    """One panel of validation FVU against `x`, a line per data kind (dots unless `lineplot` says otherwise);
    returns the axes, for the caller to adjust and save."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(
        sub,
        x=x,
        y="best_fvu",
        hue="data",
        hue_order=[d for d in DATA_ORDER if d in set(sub.data)],
        ax=ax,
        **(lineplot or {"marker": "o"}),
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Validation FVU")
    ax.set_title(title)
    return ax


def shared_split(best: pd.DataFrame, title: str, pdf: str, png: str) -> plt.Figure:
    """FVU vs the share s / (s + k) of active neurons in the always-on MLP."""
    sub = best[best.families.str.contains("shared_split")].copy()
    sub["shared_share"] = sub.shared.fillna(sub.active_neurons) / sub.active_neurons
    ax = _fvu_line(sub, "shared_share", "Shared neurons s / (s + k)  (1 = dense MLP)", title)
    _save(ax.figure, pdf, png)
    return ax.figure


def expert_width(best: pd.DataFrame, title: str, pdf: str, png: str) -> plt.Figure:
    """FVU at fixed active neurons vs each expert's hidden width (k · width held constant)."""
    sub = best[best.families.str.contains("expert_width")]
    widths = sorted(sub.expert_width.unique())
    fixed = int(sub.active_neurons.iloc[0])
    ax = _fvu_line(sub, "expert_width", f"Neurons per expert (log scale; active neurons fixed at {fixed})", title)
    ax.set_xscale("log", base=2)
    ax.set_xticks(widths, [str(int(w)) for w in widths])
    _save(ax.figure, pdf, png)
    return ax.figure


def num_experts(best: pd.DataFrame, title: str, pdf: str, png: str) -> plt.Figure:
    """FVU at fixed active neurons vs the number of experts m, one line per router."""
    sub = best[best.families.str.contains("num_experts")]
    ax = _fvu_line(
        sub,
        "experts",
        f"Experts m (log scale; active neurons fixed at {int(sub.active_neurons.iloc[0])})",
        title,
        style="router",
        markers=True,
    )
    ax.set_xscale("log")
    _save(ax.figure, pdf, png)
    return ax.figure


def learning_curves(curves: pd.DataFrame, title: str, pdf: str, png: str) -> plt.Figure:
    """Validation FVU per epoch for every student, real | Gaussian; the legend lists students by size."""
    data = [d for d in DATA_ORDER if d in set(curves.data)]
    students = by_size(list(curves.student))
    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], data, strict=False):
        sns.lineplot(
            curves[curves.data == name],
            x="epoch",
            y="val_fvu",
            hue="student",
            hue_order=students,
            ax=ax,
            legend=name == data[-1],
            errorbar=None,
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Validation FVU (log scale)")
        ax.set_title(DATA_TITLES[name])
    for ax in axes[0]:  # after every panel is drawn, as in fvu_vs_active
        ax.set_yscale("log")
    if axes[0][-1].get_legend():
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1, 1), fontsize=7, title="Student")
    fig.suptitle(title)
    _save(fig, pdf, png)
    return fig


def paper_comparison(ours: pd.DataFrame, paper: pd.DataFrame, title: str, pdf: str, png: str) -> plt.Figure:
    """Our best FVU points next to the published ones (dashed) for the same teacher."""
    ours = ours[ours.families.str.contains("main")].assign(source="this run")
    ours["family"] = ours.kind.where(ours.kind == "mlp", "moe_" + ours.router.fillna(""))
    both = pd.concat(
        [
            ours[["data", "family", "active_neurons", "best_fvu", "source"]],
            paper.assign(source="paper")[["data", "family", "active_neurons", "best_fvu", "source"]],
        ]
    )
    data = [d for d in DATA_ORDER if d in set(both.data)]
    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], data, strict=False):
        sns.lineplot(
            both[both.data == name],
            x="active_neurons",
            y="best_fvu",
            hue="family",
            style="source",
            markers=True,
            ax=ax,
            errorbar=None,
        )
        ax.set_title(DATA_TITLES[name])
    for ax in axes[0]:  # after every panel is drawn: a shared log axis would make seaborn average in log space
        _log2_axis(ax)
    fig.suptitle(title)
    _save(fig, pdf, png)
    return fig


def layer_sweep(advantage: pd.DataFrame, title: str, pdf: str, png: str) -> plt.Figure:
    """MoE advantage (matching MLP width / MoE active neurons) vs layer, real vs Gaussian."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(
        advantage.rename(columns={"active_neurons": "MoE active neurons"}),  # the column name titles the legend
        x="layer",
        y="advantage",
        hue="data",
        style="MoE active neurons",
        markers=True,
        ax=ax,
        hue_order=[d for d in DATA_ORDER if d in set(advantage.data)],
    )
    ax.axhline(1, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("Layer")
    ax.set_ylabel("MLP width to match MoE / MoE active neurons")
    ax.set_title(title)
    _save(fig, pdf, png)
    return fig


def control(advantage: pd.DataFrame, order: list[str], title: str, pdf: str, png: str) -> plt.Figure:
    """MoE advantage vs active neurons for a model and its control (column `variant`), real | Gaussian."""
    data = [d for d in DATA_ORDER if d in set(advantage.data)]
    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], data, strict=False):
        sns.lineplot(
            advantage[advantage.data == name],
            x="active_neurons",
            y="advantage",
            hue="variant",
            hue_order=order,
            marker="o",
            ax=ax,
        )
        ax.axhline(1, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("MoE active neurons (log scale)")
        ax.set_ylabel("MLP width to match MoE / MoE active neurons")
        ax.set_title(DATA_TITLES[name])
    fig.suptitle(title)
    _save(fig, pdf, png)
    return fig


VERDICT_COLORS = {"supports": "tab:green", "contradicts": "tab:red", "undecided": "tab:gray"}


def verdict(table: pd.DataFrame, by_seed: pd.DataFrame, title: str, pdf: str, png: str) -> plt.Figure:
    """The verdict at a glance: per (model, layer) panel, the MoE advantage of each MoE size on real data
    and on the Gaussian control (seeds as dots, mean with its interval as a bar), 1 (no advantage) as a
    line, and the verdict word above each size; hollow markers flag students that failed the budget check."""
    panels = list(table.groupby(["model", "layer"], sort=True))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False)
    offsets = {"real": -0.12, "gaussian": 0.12}
    colors = {"real": "tab:blue", "gaussian": "tab:orange"}
    labels = {"real": "real activations", "gaussian": "Gaussian control"}
    for ax, ((model, layer), rows) in zip(axes[0], panels, strict=True):
        rows = rows.sort_values("active_neurons").reset_index(drop=True)
        for x, row in rows.iterrows():
            for name, data in (("real", "activations"), ("gaussian", "gaussian")):
                seeds = by_seed[(by_seed.model == model) & (by_seed.layer == layer)]
                seeds = seeds[(seeds.student == row.student) & (seeds.data == data)]
                ax.scatter([x + offsets[name]] * len(seeds), seeds.advantage, s=12, color=colors[name], alpha=0.5)
                if pd.isna(row[f"advantage_{name}"]):  # an FVU outside the measured MLP curve: no width matches
                    ax.annotate(
                        "outside the\nMLP widths",
                        (x + offsets[name], 1.0),
                        ha="center",
                        va="bottom",
                        color=colors[name],
                        fontsize=8,
                        xytext=(0, 4),
                        textcoords="offset points",
                    )
                low, high, mean = row[f"{name}_low"], row[f"{name}_high"], row[f"advantage_{name}"]
                marker = bound_marker(low, high)
                if pd.notna(mean):
                    low, high = bound_ends(mean, low, high)
                ax.errorbar(
                    x + offsets[name],
                    mean,
                    yerr=None if pd.isna(low) else [[mean - low], [high - mean]],
                    fmt=marker,
                    color=colors[name],
                    mfc=colors[name] if row.converged else "white",
                    capsize=4,
                    label=labels[name] if x == 0 else None,
                )
            ends = (row.real_high, row.gaussian_high, row.advantage_real, 1.0)
            top = max(v for v in ends if pd.notna(v) and v != math.inf)
            ax.annotate(
                row.verdict,
                (x, top),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                color=VERDICT_COLORS[row.verdict],
                weight="bold",
            )
        ax.axhline(1.0, color="black", lw=0.8, ls="--")
        ax.set_xticks(
            range(len(rows)),
            [f"{int(a)} active\n{_short(s)}" for a, s in zip(rows.active_neurons, rows.student, strict=True)],
        )
        ax.set_xlim(-0.6, len(rows) - 0.4)
        ax.set_ylabel("MoE advantage\n(MLP width matching its FVU / its active neurons)")
        ax.set_title(f"{model} layer {layer}")
        ax.margins(y=0.2)
    axes[0][0].legend(loc="lower left", fontsize=8)
    fig.suptitle(f"{title}; hollow: a student failed the budget check; ▲ lower bound, ▼ upper bound", fontsize=10)
    _save(fig, pdf, png)
    return fig


def _short(student: str) -> str:
    """m and s + k (× the expert width, when wider than 1) of an MoE student, for tick labels; the name is
    read by students/spec.py, the grammar's one statement."""
    spec = parse_student(student)
    width = f"×{spec['expert_width']}" if spec["expert_width"] != 1 else ""
    return f"m={spec['experts']}, {spec['shared']}+{spec['k']}{width}"


def what_fvu_measures(
    by_kind: pd.DataFrame, control: str, base: str, epochs: int, title: str, pdf: str, png: str
) -> plt.Figure:
    """What the published FVU measures, for one padding control (`control`, padded positions kept) and the
    model it is `same_as` (`base`, non-padding tokens), at one layer: FVU of the main comparison's MLPs and
    MoEs against active neurons, three ways: the control's FVU over all rows (the published number), the
    same students' FVU on the control's token rows only (against those rows' own variance), and the FVU on
    token rows of the same students trained on non-padding D_act.  Each run at its best epoch, each point
    the mean over seeds of the best learning rate by all-rows FVU.  Annotation: the pad rows' share of the
    control's validation rows and of its Var(y).  `by_kind`: rows of fvu_by_kind.csv, one layer."""
    runs = by_kind[
        (by_kind.data == "activations")
        & (by_kind.epochs == epochs)
        & by_kind.model.isin([control, base])
        & by_kind.families.str.contains("main")
    ]
    whole = runs[runs.row_kind == "all"]
    keys = ["model", "student", "seed"]
    chosen = runs.merge(whole.loc[whole.groupby(keys).fvu.idxmin(), [*keys, "lr"]], on=[*keys, "lr"])
    measures = [  # (model, row kind, FVU column, label)
        (control, "all", "fvu", "padded D_act, all rows (published)"),
        (control, "token", "fvu_own", "padded D_act, token rows only"),
        (base, "token", "fvu_own", "non-padding D_act, token rows"),
    ]
    lines = []
    for model, row_kind, column, label in measures:
        part = chosen[(chosen.model == model) & (chosen.row_kind == row_kind)]
        lines.append(part.assign(measure=label, value=part[column]))
    plot = pd.concat(lines, ignore_index=True)
    plot["student"] = [student_label(pd.Series(parse_student(s))) for s in plot.student]
    plot = plot.rename(columns={"measure": "FVU measured on"})
    fig, ax = plt.subplots(figsize=(9, 4.6))
    sns.lineplot(
        plot,
        x="active_neurons",
        y="value",
        hue="student",
        style="FVU measured on",
        style_order=[m[3] for m in measures],
        markers=True,
        errorbar=None,
        ax=ax,
    )
    _log2_axis(ax)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    pad = chosen[(chosen.model == control) & (chosen.row_kind == "pad")]
    if len(pad):
        rows = pad.rows.sum() / chosen[(chosen.model == control) & (chosen.row_kind == "all")].rows.sum()
        title = f"{title}\npad rows: {rows:.0%} of the rows, {pad.variance_share.mean():.0%} of Var(y)"
    ax.set_title(title)
    _save(fig, pdf, png)
    return fig


def ladder(runs: pd.DataFrame, tolerance: float, title: str, pdf: str, png: str) -> plt.Figure:
    """Convergence as a ladder, for one model and layer: each main-comparison student's FVU (best over learning
    rates, mean over seeds; bars: min to max over seeds) against the training budget, real | Gaussian, with the
    tolerance band (±`tolerance` around the last rung) over the last doubling: a line whose previous rung lies
    outside its band has not converged."""
    main = runs[runs.families.str.contains("main")]
    per_seed = main.loc[main.groupby(["data", "student", "epochs", "seed"]).best_fvu.idxmin()]
    points = per_seed.groupby(["data", "student", "epochs"], as_index=False).best_fvu.agg(["mean", "min", "max"])
    data = [d for d in DATA_ORDER if d in set(points.data)]
    students = by_size(list(points.student))
    colours = dict(zip(students, sns.color_palette("viridis", len(students)), strict=True))
    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], data, strict=False):
        for student in students:
            line = points[(points.data == name) & (points.student == student)].sort_values("epochs")
            if line.empty:
                continue
            spread = [line["mean"] - line["min"], line["max"] - line["mean"]]
            ax.errorbar(
                line.epochs, line["mean"], yerr=spread, marker="o", color=colours[student], label=student, capsize=2
            )
            if len(line) >= 2:
                last, before = line.iloc[-1], line.iloc[-2]
                band = (last["mean"] * (1 - tolerance), last["mean"] * (1 + tolerance))
                ax.fill_between([before.epochs, last.epochs], *band, color=colours[student], alpha=0.15, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        budgets = sorted(set(points.epochs))
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.xaxis.set_minor_locator(NullLocator())  # the y axis keeps its minor ticks: FVUs within one decade
        ax.yaxis.set_major_formatter(FuncFormatter(plain_number))
        ax.yaxis.set_minor_formatter(FuncFormatter(plain_number))
        ax.set_xlabel("Training budget, epochs (log scale)")
        ax.set_ylabel("Validation FVU (log scale)")
        ax.set_title(DATA_TITLES[name])
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1, 1), fontsize=7, title="Student")
    fig.suptitle(f"{title}; band: ±{tolerance:.0%} of the last rung")
    _save(fig, pdf, png)
    return fig
