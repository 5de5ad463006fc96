"""Figures (seaborn), each saved as PDF and PNG from the results tables; every function returns its figure.

Axis labels are words (not column names), with "(log scale)" on logarithmic axes. An interval that is only a bound
(verdict.side_interval: an open side 0 or inf) is drawn as a bar from its finite end to the edge of the axis with
an arrowhead there, never as a finite bar; open on both sides, as a point alone (`draw_interval`)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.container import ErrorbarContainer
from matplotlib.markers import CARETDOWNBASE, CARETUPBASE
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullLocator

from secret_moe.aggregate import student_label
from secret_moe.students import active_neurons, parse_student

sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
DATA_ORDER = ["activations", "gaussian"]
DATA_TITLES = {"activations": "real activations", "gaussian": "Gaussian control"}
MIN_ADVANTAGE_SPAN = 0.5  # an advantage axis spans at least this much: a 1% difference does not fill the panel
ROUTER_WORDS = {"fullrank": ", full-rank router", "product_key": ", product-key router"}  # lowrank: the paper's


def plain_number(value: float, _position: int) -> str:
    """A tick label without scientific notation or offsets (for FuncFormatter)."""
    return f"{value:g}"


def bound_marker(low: float, high: float) -> str:
    """▲ for a lower bound (open top: inf), ▼ for an upper bound (open bottom: 0), a dot for an interval and for
    bounds only (both sides open); verdict.side_interval gives the open sides."""
    if low == 0 and high == math.inf:
        return "o"
    return "^" if high == math.inf else "v" if low == 0 else "o"


def interval_ends(low: float, high: float, limits: tuple[float, float]) -> tuple[float, float] | None:
    """The drawn ends of an interval on an axis of y `limits`: an open side (low 0, high inf) runs to the axis edge;
    None where no bar is drawn (bounds only: both sides open; or no interval)."""
    if pd.isna(low) or pd.isna(high) or (low == 0 and high == math.inf):
        return None
    return limits[0] if low == 0 else low, limits[1] if high == math.inf else high


def draw_interval(
    ax: plt.Axes, x: float, mean: float, low: float, high: float, *, colour: str, filled: bool, label: str | None
) -> ErrorbarContainer:
    """The mean as a point (`bound_marker`, hollow unless `filled`) and its interval as a bar with a cap at each
    finite end and an arrowhead at each open end, on the edge of the axis: set the y limits first."""
    ends = None if pd.isna(mean) else interval_ends(low, high, ax.get_ylim())
    yerr = None if ends is None else [[max(mean - ends[0], 0.0)], [max(ends[1] - mean, 0.0)]]
    face = colour if filled else "white"
    drawn = ax.errorbar(x, mean, yerr=yerr, fmt=bound_marker(low, high), color=colour, mfc=face, label=label)
    if ends is not None:  # a cap at a finite end, an arrowhead at an open one
        for end, is_open, caret in ((ends[0], low == 0, CARETDOWNBASE), (ends[1], high == math.inf, CARETUPBASE)):
            ax.plot([x], [end], ls="none", marker=caret if is_open else "_", ms=9, mew=1.5, color=colour, clip_on=False)
    return drawn


def advantage_limits(ax: plt.Axes, values: Iterable[float], *, open_top: bool, open_bottom: bool) -> None:
    """Y limits of an MoE-advantage axis: 1 (no advantage) and every finite value, at least MIN_ADVANTAGE_SPAN wide,
    with a margin, and more room on each side where a bound's arrow runs to the edge."""
    finite = [float(v) for v in values if pd.notna(v) and 0 < v < math.inf] + [1.0]
    low, high = min(finite), max(finite)
    if high - low < MIN_ADVANTAGE_SPAN:
        middle = (low + high) / 2
        low, high = middle - MIN_ADVANTAGE_SPAN / 2, middle + MIN_ADVANTAGE_SPAN / 2
    span = high - low
    ax.set_ylim(max(low - span * (0.25 if open_bottom else 0.08), 0.0), high + span * (0.25 if open_top else 0.08))


def open_sides(table: pd.DataFrame, sides: Iterable[str]) -> tuple[bool, bool]:
    """(any lower bound, any upper bound) among the `<side>_low`/`<side>_high` intervals of a verdict-like table."""
    lows = pd.concat([pd.to_numeric(table[f"{side}_low"]) for side in sides])
    highs = pd.concat([pd.to_numeric(table[f"{side}_high"]) for side in sides])
    return bool(((highs == math.inf) & (lows != 0)).any()), bool(((lows == 0) & (highs != math.inf)).any())


def data_kinds(table: pd.DataFrame) -> list[str]:
    """The data kinds of a table in the figures' order: real activations, then the Gaussian control."""
    return [d for d in DATA_ORDER if d in set(table.data)]


def data_panels(table: pd.DataFrame) -> tuple[plt.Figure, list[tuple[plt.Axes, str]]]:
    """One titled panel per data kind of `table`, side by side on a shared y axis: (figure, [(axes, data kind)])."""
    data = data_kinds(table)
    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], data, strict=True):
        ax.set_title(DATA_TITLES[name])
    return fig, list(zip(axes[0], data, strict=True))


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


def by_kind_and_size(students: list[str]) -> list[str]:
    """Student names, the dense MLPs first (by width), then the MoEs (by active neurons), then by name."""

    def key(name: str) -> tuple[bool, int, str]:
        spec = parse_student(name)
        return spec["kind"] != "mlp", active_neurons(spec), name

    return sorted(set(students), key=key)


def student_words(student: str) -> str:
    """A student in words ("MLP: 32 neurons", "MoE: 32 shared + 32 of 1,024 experts"), read by students/spec.py, the
    name grammar's one statement; an expert wider than one neuron and a router other than the paper's are named."""
    spec = parse_student(student)
    if spec["kind"] == "mlp":
        return f"MLP: {spec['hidden']} neurons"
    width = f" of {spec['expert_width']} neurons" if spec["expert_width"] != 1 else ""
    router = ROUTER_WORDS.get(spec["router"], "")
    return f"MoE: {spec['shared']} shared + {spec['k']} of {spec['experts']:,} experts{width}{router}"


def fvu_vs_active(best: pd.DataFrame, title: str, pdf: str, png: str) -> plt.Figure:
    """FVU vs active neurons: MLP vs MoE (one line per router and expert count), real | Gaussian."""
    main = best[best.families.str.contains("main")].copy()
    main["student"] = main.apply(student_label, axis=1)
    fig, panels = data_panels(main)
    for ax, name in panels:
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
    for ax, _ in panels:  # after every panel is drawn: a shared log axis would make seaborn average in log space
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
    sns.barplot(sub, x="router", y="best_fvu", hue="data", hue_order=data_kinds(sub), ax=ax)
    ax.set_ylabel("Validation FVU")
    ax.set_xlabel("Router (MoE students with s = k; bars average over sizes)")
    ax.set_title(title)
    _save(fig, pdf, png)
    return fig


def _fvu_line(sub: pd.DataFrame, x: str, xlabel: str, title: str, **lineplot) -> plt.Axes:
    """One panel of validation FVU against `x`, a line per data kind (dots unless `lineplot` says otherwise);
    returns the axes, for the caller to adjust and save."""
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(sub, x=x, y="best_fvu", hue="data", hue_order=data_kinds(sub), ax=ax, **(lineplot or {"marker": "o"}))
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
    students = by_size(list(curves.student))
    fig, panels = data_panels(curves)
    for ax, name in panels:
        sns.lineplot(
            curves[curves.data == name],
            x="epoch",
            y="val_fvu",
            hue="student",
            hue_order=students,
            ax=ax,
            legend=ax is panels[-1][0],
            errorbar=None,
        )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Validation FVU (log scale)")
    for ax, _ in panels:  # after every panel is drawn, as in fvu_vs_active
        ax.set_yscale("log")
    if panels[-1][0].get_legend():
        sns.move_legend(panels[-1][0], "upper left", bbox_to_anchor=(1, 1), fontsize=7, title="Student")
    fig.suptitle(title)
    _save(fig, pdf, png)
    return fig


def paper_comparison(ours: pd.DataFrame, paper: pd.DataFrame, title: str, pdf: str, png: str) -> plt.Figure:
    """Our best FVU points next to the published ones (dashed) for the same teacher."""
    ours = ours[ours.families.str.contains("main")].assign(source="this run")
    ours["family"] = ours.kind.where(ours.kind == "mlp", "moe_" + ours.router.fillna(""))
    columns = ["data", "family", "active_neurons", "best_fvu", "source"]
    both = pd.concat([ours[columns], paper.assign(source="paper")[columns]])
    fig, panels = data_panels(both)
    for ax, name in panels:
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
    for ax, _ in panels:  # after every panel is drawn: a shared log axis would make seaborn average in log space
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
        hue_order=data_kinds(advantage),
    )
    ax.axhline(1, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("Layer")
    ax.set_ylabel("MLP width to match MoE / MoE active neurons")
    ax.set_title(title)
    _save(fig, pdf, png)
    return fig


def control(advantage: pd.DataFrame, order: list[str], title: str, pdf: str, png: str) -> plt.Figure:
    """MoE advantage vs active neurons for a model and its control (column `variant`), real | Gaussian."""
    fig, panels = data_panels(advantage)
    for ax, name in panels:
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
    fig.suptitle(title)
    _save(fig, pdf, png)
    return fig


VERDICT_COLORS = {"supports": "tab:green", "contradicts": "tab:red", "undecided": "tab:gray"}
# the two sides of a verdict row: (column stem, data kind of advantage_by_seed, x offset, colour, legend label)
VERDICT_SIDES = (
    ("real", "activations", -0.12, "tab:blue", "real activations"),
    ("gaussian", "gaussian", 0.12, "tab:orange", "Gaussian control"),
)
VERDICT_KEY = (
    "hollow: a student moved more than the tolerance in its last doubling (the bars count the training to come)"
    "\narrow: a bound (▲ open to ∞, ▼ open to 0); no bar: bounds only"
)


def verdict(table: pd.DataFrame, by_seed: pd.DataFrame, title: str, pdf: str, png: str) -> plt.Figure:
    """The verdict at a glance: per (model, layer) panel, the MoE advantage of each MoE size on real data and on the
    Gaussian control (seeds as dots, the mean with its interval drawn as verdict.csv gives it: `draw_interval`),
    1 (no advantage) as a line, and the verdict word above each size; hollow markers flag students that moved more
    than the budget check's tolerance over their last doubling (`converged` of the row)."""
    panels = list(table.groupby(["model", "layer"], sort=True))
    widths = [1.8 + 2.8 * len(rows) for _, rows in panels]
    key = "\n".join(textwrap.fill(line, int(sum(widths) * 12)) for line in VERDICT_KEY.split("\n"))  # fits one panel
    height = 4.2 + 0.16 * (key.count("\n") + 2)  # the axes keep their height however many lines the key takes
    fig, axes = plt.subplots(1, len(panels), figsize=(sum(widths), height), width_ratios=widths, squeeze=False)
    for ax, ((model, layer), rows) in zip(axes[0], panels, strict=True):
        seeds = by_seed[(by_seed.model == model) & (by_seed.layer == layer)]
        _verdict_panel(ax, rows.sort_values("active_neurons").reset_index(drop=True), seeds)
        ax.set_title(f"{model} layer {layer}", pad=26)  # above the verdict words
    axes[0][0].legend(loc="best", fontsize=8)
    fig.suptitle(f"{title}\n{key}", fontsize=10)
    _save(fig, pdf, png)
    return fig


def _verdict_panel(ax: plt.Axes, rows: pd.DataFrame, seeds: pd.DataFrame) -> None:
    """One (model, layer) of the verdict figure: `rows` its verdict rows by size, `seeds` its advantage_by_seed rows."""
    stems = [side[0] for side in VERDICT_SIDES]
    ends = [rows[f"{s}_{end}"] for s in stems for end in ("low", "high")]
    values = pd.concat([seeds.advantage, *(rows[f"advantage_{s}"] for s in stems), *ends])
    top, bottom = open_sides(rows, stems)
    advantage_limits(ax, values, open_top=top, open_bottom=bottom)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    for x, row in rows.iterrows():
        for stem, data, offset, colour, label in VERDICT_SIDES:
            dots = seeds[(seeds.student == row.student) & (seeds.data == data)]
            ax.scatter([x + offset] * len(dots), dots.advantage, s=12, color=colour, alpha=0.5)
            _verdict_side(ax, x + offset, row, stem, colour, label if x == 0 else None)
        ax.annotate(  # above the panel, clear of every bar and of an arrowhead on the top edge
            row.verdict,
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(0, 10),
            textcoords="offset points",
            ha="center",
            va="bottom",
            color=VERDICT_COLORS[row.verdict],
            weight="bold",
        )
    sizes = zip(rows.student, rows.active_neurons, strict=True)
    labels = [f"{student_words(s)}\n({int(a)} active neurons)" for s, a in sizes]
    ax.set_xticks(range(len(rows)), labels, fontsize=9)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    ax.set_ylabel("MoE advantage\n(MLP width matching its FVU\n/ its active neurons)")


def _verdict_side(ax: plt.Axes, x: float, row: pd.Series, stem: str, colour: str, label: str | None) -> None:
    """One side's mean and interval, with a note where it is no number (outside the MLP widths) or bounds only."""
    mean, low, high = row[f"advantage_{stem}"], row[f"{stem}_low"], row[f"{stem}_high"]
    draw_interval(ax, x, mean, low, high, colour=colour, filled=bool(row.converged), label=label)
    note = {"color": colour, "fontsize": 8, "textcoords": "offset points"}
    if pd.isna(mean):  # an FVU outside the measured MLP curve: no width matches
        ax.annotate("outside the\nMLP widths", (x, 1.0), xytext=(0, 4), ha="center", va="bottom", **note)
    elif low == 0 and high == math.inf:  # open both ways: no bar, and the point says so, on its outer side
        left = stem == VERDICT_SIDES[0][0]
        where = {"xytext": (-8 if left else 8, 0), "ha": "right" if left else "left", "va": "center"}
        ax.annotate("bounds\nonly", (x, mean), **where, **note)


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
    measures = [  # (model, row kind, FVU column, label)
        (control, "all", "fvu", "padded D_act, all rows (published)"),
        (control, "token", "fvu_own", "padded D_act, token rows only"),
        (base, "token", "fvu_own", "non-padding D_act, token rows"),
    ]
    chosen = _at_best_lr(by_kind, control, base, epochs)
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


def _at_best_lr(by_kind: pd.DataFrame, control: str, base: str, epochs: int) -> pd.DataFrame:
    """The fvu_by_kind rows of the main comparison of `control` and `base` on real data at `epochs`, each run's
    rows at the learning rate with its best all-rows FVU."""
    runs = by_kind[
        (by_kind.data == "activations")
        & (by_kind.epochs == epochs)
        & by_kind.model.isin([control, base])
        & by_kind.families.str.contains("main")
    ]
    whole = runs[runs.row_kind == "all"]
    keys = ["model", "student", "seed"]
    return runs.merge(whole.loc[whole.groupby(keys).fvu.idxmin(), [*keys, "lr"]], on=[*keys, "lr"])


def ladder(runs: pd.DataFrame, tolerance: float, title: str, pdf: str, png: str) -> plt.Figure:
    """Convergence as a ladder, for one model and layer: each main-comparison student's FVU (best over learning
    rates, mean over seeds; bars: min to max over seeds) against the training budget, real | Gaussian, with the
    tolerance band (±`tolerance` around the last rung) over the last doubling: a line whose previous rung lies
    outside its band has not converged. The legend names the students in words, MLPs by width, then MoEs."""
    main = runs[runs.families.str.contains("main")]
    per_seed = main.loc[main.groupby(["data", "student", "epochs", "seed"]).best_fvu.idxmin()]
    points = per_seed.groupby(["data", "student", "epochs"], as_index=False).best_fvu.agg(["mean", "min", "max"])
    students = by_kind_and_size(list(points.student))
    mlps = [s for s in students if parse_student(s)["kind"] == "mlp"]  # MLPs blue to green, MoEs red
    shades = [*sns.color_palette("viridis", len(mlps)), *sns.color_palette("flare", len(students) - len(mlps))]
    colours = dict(zip(students, shades, strict=True))
    fig, panels = data_panels(points)
    for ax, name in panels:
        _ladder_panel(ax, points[points.data == name], students, colours, tolerance)
    handles = {c.get_label(): c for ax, _ in panels for c in ax.containers}  # each student's errorbar
    shown = [s for s in students if s in handles]
    panels[-1][0].legend(
        [handles[s] for s in shown], [student_words(s) for s in shown], loc="upper left", bbox_to_anchor=(1, 1)
    )
    panels[-1][0].get_legend().set_title("Student")
    n = int(per_seed.seed.nunique())
    key = (
        f"dot: mean over {n} seed{'s' * (n != 1)}; bar: min to max over seeds; band: ±{tolerance:.0%} of the last rung"
    )
    fig.suptitle(f"{title}\n{key}")
    _save(fig, pdf, png)
    return fig


def _ladder_panel(
    ax: plt.Axes, points: pd.DataFrame, students: list[str], colours: dict[str, tuple], tolerance: float
) -> None:
    """One data kind of the ladder figure: each student's mean FVU per budget with its spread and band."""
    for student in students:
        line = points[points.student == student].sort_values("epochs")
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
    ax.yaxis.set_tick_params(which="both", labelleft=True)  # every panel labels its FVU axis, not only the first
    ax.set_xlabel("Training budget, epochs (log scale)")
    ax.set_ylabel("Validation FVU (log scale)")
