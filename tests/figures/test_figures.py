"""Every figure renders a PDF and a PNG from a small results table built like the workflow builds it, and draws
that table: the points of every plotted line (or bar, or scatter) are compared with the rows it was drawn
from, so a figure that drops a curve, the paper's points or the control's model fails."""

from __future__ import annotations

import ast
import math
from itertools import product
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib.markers import CARETDOWNBASE, CARETUPBASE

from secret_moe import figures
from secret_moe.aggregate import (
    advantage_per_seed,
    best_over_lr,
    best_per_seed,
    moe_advantage,
    runs_table,
    student_label,
)
from secret_moe.layout import RUN_KEYS
from secret_moe.steps.figures import plot_control, plot_figure
from secret_moe.students import active_neurons, parse_student
from secret_moe.testing import metric
from secret_moe.verdict import verdict_table

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "reference" / "paper_fvu_summary.csv"

FAMILIES = {
    "main": [
        "mlp_h4",
        "mlp_h8",
        "mlp_h16",
        "mlp_h32",
        "moe_lowrank_r8_m64_s2_k2",
        "moe_lowrank_r8_m64_s4_k4",
        "moe_lowrank_r8_m64_s8_k8",
    ],
    "shared_split": ["moe_lowrank_r8_m64_s0_k8", "moe_lowrank_r8_m64_s4_k4", "mlp_h8"],
    "router_rank": [
        "moe_lowrank_r4_m64_s4_k4",
        "moe_lowrank_r8_m64_s4_k4",
        "moe_fullrank_m64_s4_k4",
        "moe_product_key_r8_m64_s4_k4",
    ],
    "expert_width": ["moe_lowrank_r8_m64_s4_k4", "moe_lowrank_r8_m64_s4_k2_e2", "moe_lowrank_r8_m64_s4_k1_e4"],
    "num_experts": ["moe_lowrank_r8_m64_s4_k4", "moe_lowrank_r8_m256_s4_k4", "moe_product_key_r8_m1024_s4_k4"],
    "layer_sweep": ["mlp_h4", "mlp_h16", "moe_lowrank_r8_m64_s4_k4"],
}


def build_tables(data_kinds=("activations", "gaussian"), layers=(1,), lrs=(1e-3,), model="tiny", moe_factor=0.6):
    """(best, curves, advantage) from synthetic metrics: FVU falls with active neurons, MoE below MLP."""
    rng = np.random.default_rng(0)
    metrics, membership = [], {}
    for layer in layers:
        for family, students in FAMILIES.items():
            if family == "layer_sweep" or layer == layers[0]:
                for student in students:
                    membership.setdefault((model, layer, student), [])
                    if family not in membership[(model, layer, student)]:
                        membership[(model, layer, student)].append(family)
        for student in {s for (_, at, s) in membership if at == layer}:
            spec = parse_student(student)
            base = active_neurons(spec) ** -0.5 * (moe_factor if spec["kind"] == "moe" else 1.0)
            for data, lr in ((d, lr) for d in data_kinds for lr in lrs):
                scale = 1.0 if data == "activations" else 1.3
                fvus = (base * scale * (1 + 1 / np.arange(1, 5)) * rng.uniform(0.95, 1.05, 4)).tolist()
                metrics.append(metric(model, layer, data, student, lr, 0, fvus, epochs=4))
    runs = runs_table(metrics, membership)
    best = best_over_lr(runs, epochs=4)
    curves = pd.DataFrame([{**{k: m[k] for k in RUN_KEYS}, **h} for m in metrics for h in m["history"]])
    return best, curves, moe_advantage(advantage_per_seed(best_per_seed(runs, epochs=4)), confidence=0.95)


def assert_rendered(pdf: Path, png: Path) -> None:
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 2000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert np.unique(image.reshape(-1, image.shape[-1]), axis=0).shape[0] > 20  # not a blank canvas


@pytest.fixture(scope="module")
def tables():
    return build_tables()


def _key(x: float, y: float) -> tuple[float, float]:
    return round(float(x), 9), round(float(y), 9)


def drawn_points(ax) -> set[tuple[float, float]]:
    """The (x, y) data points of every line in the axes (markers included), without reference lines such as
    `axhline` (drawn from x = 0 to 1 in axes coordinates)."""
    points = set()
    for line in ax.get_lines():
        x, y = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        if line.get_transform() != ax.transData and list(x) == [0.0, 1.0]:
            continue  # axhline: x in axes coordinates
        points |= {_key(a, b) for a, b in zip(x, y, strict=True) if np.isfinite(a) and np.isfinite(b)}
    return points


def expected_points(table: pd.DataFrame, groups: list[str], x: str, y: str) -> set[tuple[float, float]]:
    """The points seaborn draws for `table`: one per line (the groups) and x, the mean of y."""
    means = table.groupby([*groups, x])[y].mean().reset_index()
    return {_key(a, b) for a, b in zip(means[x], means[y], strict=True)}


def panels(fig) -> dict[str, object]:
    """The figure's axes by data kind, from their titles."""
    names = {title: data for data, title in figures.DATA_TITLES.items()}
    return {names[ax.get_title()]: ax for ax in fig.axes if ax.get_title() in names}


def line_points_by_label(ax) -> dict[str, set[tuple[float, float]]]:
    """Points of the lines of each legend entry, matched by colour (one hue per entry)."""
    legend = ax.get_legend()
    colours = {
        tuple(h.get_color()) if not isinstance(h.get_color(), str) else h.get_color(): text.get_text()
        for h, text in zip(legend.legend_handles, legend.get_texts(), strict=True)
    }
    by_label: dict[str, set] = {}
    for line in ax.get_lines():
        colour = line.get_color()
        label = colours.get(tuple(colour) if not isinstance(colour, str) else colour)
        if label is not None:
            by_label.setdefault(label, set()).update(
                _key(a, b) for a, b in zip(line.get_xdata(), line.get_ydata(), strict=True) if np.isfinite(b)
            )
    return by_label


def paper_rows():
    paper = pd.read_csv(PAPER)
    return paper[(paper.model == "EleutherAI/pythia-70m") & (paper.layer == 3) & paper.in_notebook_figure]


BEST_TABLE_FIGURES = ["fvu_vs_active", "router_comparison", "shared_split", "expert_width", "num_experts"]


@pytest.mark.parametrize("name", [n for n in BEST_TABLE_FIGURES if n != "shared_split"])
def test_best_table_figures(tables, tmp_path, name):
    best, _, _ = tables
    pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
    getattr(figures, name)(best, f"tiny layer 1 {name}", str(pdf), str(png))
    assert_rendered(pdf, png)


def test_fvu_vs_active_draws_every_main_student(tables, tmp_path):
    best, _, _ = tables
    fig = figures.fvu_vs_active(best, "t", str(tmp_path / "a.pdf"), str(tmp_path / "a.png"))
    main = best[best.families.str.contains("main")]
    assert set(panels(fig)) == {"activations", "gaussian"}
    for data, ax in panels(fig).items():
        rows = main[main.data == data]
        assert drawn_points(ax) == {_key(a, b) for a, b in zip(rows.active_neurons, rows.best_fvu, strict=True)}
        # one line per MLP family and per MoE router and expert count: here the MLPs and one MoE line
        assert {text.get_text() for text in ax.get_legend().get_texts()} == set(main.apply(student_label, axis=1))


@pytest.mark.parametrize(
    ("name", "family", "x", "groups"),
    [
        ("shared_split", "shared_split", "shared_share", ["data"]),
        ("expert_width", "expert_width", "expert_width", ["data"]),
        ("num_experts", "num_experts", "experts", ["data", "router"]),
    ],
)
def test_ablation_figures_draw_their_familys_points(tables, tmp_path, name, family, x, groups):
    best, _, _ = tables
    sub = best[best.families.str.contains(family)].copy()
    sub["shared_share"] = sub.shared.fillna(sub.active_neurons) / sub.active_neurons
    fig = getattr(figures, name)(best, name, str(tmp_path / "a.pdf"), str(tmp_path / "a.png"))
    (ax,) = fig.axes
    assert drawn_points(ax) == expected_points(sub, groups, x, "best_fvu")
    assert {text.get_text() for text in ax.get_legend().get_texts()} >= set(sub.data)


def test_router_comparison_draws_a_bar_per_router_and_data(tables, tmp_path):
    best, _, _ = tables
    fig = figures.router_comparison(best, "routers", str(tmp_path / "r.pdf"), str(tmp_path / "r.png"))
    (ax,) = fig.axes
    labels = [text.get_text() for text in ax.get_xticklabels()]
    assert sorted(labels) == ["full rank", "low rank 4", "low rank 8", "product key 8"]
    sub = best[best.families.str.contains("router_rank")]
    expected = sub.groupby(["data", "router", "rank"], dropna=False).best_fvu.mean()
    heights = sorted(round(p.get_height(), 9) for p in ax.patches if p.get_height() > 0)
    assert heights == sorted(round(v, 9) for v in expected)


def test_learning_curves_draw_every_students_curve(tables, tmp_path):
    _, curves, _ = tables
    fig = figures.learning_curves(curves, "tiny layer 1", str(tmp_path / "c.pdf"), str(tmp_path / "c.png"))
    assert_rendered(tmp_path / "c.pdf", tmp_path / "c.png")
    for data, ax in panels(fig).items():
        rows = curves[curves.data == data]
        assert drawn_points(ax) == expected_points(rows, ["student"], "epoch", "val_fvu")
        assert len([line for line in ax.get_lines() if len(line.get_xdata())]) == rows.student.nunique()


def test_layer_sweep_draws_every_layers_advantage(tmp_path):
    _, _, advantage = build_tables(layers=(1, 2, 3))
    assert set(advantage.layer) == {1, 2, 3}
    fig = figures.layer_sweep(advantage, "tiny by layer", str(tmp_path / "s.pdf"), str(tmp_path / "s.png"))
    assert_rendered(tmp_path / "s.pdf", tmp_path / "s.png")
    (ax,) = fig.axes
    drawn = advantage.dropna(subset=["advantage"])
    assert drawn_points(ax) == expected_points(drawn, ["data", "active_neurons"], "layer", "advantage")


def test_control_from_csv(tmp_path):
    """A model and its control (here random weights), through the rule's step (CSV in, figure out)."""
    _, _, trained = build_tables(model="tiny", layers=(1, 2))  # layer 2: a sweep layer the control lacks
    _, _, random = build_tables(model="tiny-random", moe_factor=1.0)
    pd.concat([trained, random]).to_csv(tmp_path / "advantage.csv", index=False)
    fig = plot_control(
        str(tmp_path / "advantage.csv"),
        model="tiny-random",
        base="tiny",
        label="random weights",
        base_label="pretrained",
        pdf=str(tmp_path / "i.pdf"),
        png=str(tmp_path / "i.png"),
    )
    assert_rendered(tmp_path / "i.pdf", tmp_path / "i.png")
    # each legend entry's line holds the advantages of the model it names, at the control's layer only
    for data, ax in panels(fig).items():
        drawn = line_points_by_label(ax)
        assert set(drawn) == {"random weights", "pretrained"}
        for label, source in (("random weights", random), ("pretrained", trained[trained.layer == 1])):
            rows = source[(source.data == data)].dropna(subset=["advantage"])
            assert drawn[label] == expected_points(rows, [], "active_neurons", "advantage"), label


def test_single_data_kind_still_renders(tmp_path):
    best, _, _ = build_tables(data_kinds=("activations",))
    figures.fvu_vs_active(best, "only real", str(tmp_path / "a.pdf"), str(tmp_path / "a.png"))
    assert_rendered(tmp_path / "a.pdf", tmp_path / "a.png")


@pytest.mark.parametrize("name", ["shared_split", "paper_comparison"])
def test_plot_figure_step_from_csv(tables, tmp_path, name):
    """The rule's path: tables written to CSV, read back, filtered to one model and layer (and for the paper
    comparison, the published points of `hf_id` shown in the paper's figure)."""
    best, curves, _ = tables
    assert len(paper_rows()) > 10
    best.to_csv(tmp_path / "best.csv", index=False)
    curves.to_csv(tmp_path / "curves.csv", index=False)
    pdf, png = tmp_path / f"{name}.pdf", tmp_path / f"{name}.png"
    plot_figure(
        name,
        str(tmp_path / "best.csv"),
        str(tmp_path / "curves.csv"),
        str(PAPER),
        model="tiny",
        layer=1,
        hf_id="EleutherAI/pythia-70m",
        epochs=4,
        pdf=str(pdf),
        png=str(png),
    )
    assert_rendered(pdf, png)


def test_paper_comparison_draws_our_points_and_the_papers(tables, tmp_path):
    best, _, _ = tables
    paper = paper_rows()
    fig = figures.paper_comparison(best, paper, "paper", str(tmp_path / "p.pdf"), str(tmp_path / "p.png"))
    main = best[best.families.str.contains("main")]
    for data, ax in panels(fig).items():
        rows = main[main.data == data]
        ours = {_key(a, b) for a, b in zip(rows.active_neurons, rows.best_fvu, strict=True)}
        published = expected_points(paper[paper.data == data], ["family"], "active_neurons", "best_fvu")
        assert published and ours and drawn_points(ax) == ours | published
        assert {"this run", "paper"} <= {text.get_text() for text in ax.get_legend().get_texts()}


def test_learning_curves_legend_lists_students_by_size_and_axes_are_labelled_in_words(tmp_path):
    # hand-made, in an order unlike by size: MLP before MoE at 8 active neurons; s0_k8 and s4_k4 are both 8
    students = ["moe_lowrank_r8_m64_s4_k4", "mlp_h16", "moe_lowrank_r8_m64_s2_k2", "mlp_h8", "moe_lowrank_r8_m64_s0_k8"]
    curves = pd.DataFrame(
        [
            {"data": data, "student": student, "epoch": epoch, "val_fvu": 1 / (epoch + i)}
            for data in ("activations", "gaussian")
            for i, student in enumerate(students)
            for epoch in (1, 2, 3)
        ]
    )
    fig = figures.learning_curves(curves, "tiny layer 1", str(tmp_path / "c.pdf"), str(tmp_path / "c.png"))
    legend = fig.axes[-1].get_legend()
    assert legend.get_title().get_text() == "Student"
    assert [text.get_text() for text in legend.get_texts()] == [
        "moe_lowrank_r8_m64_s2_k2",  # 4 active neurons
        "mlp_h8",  # 8: the MLP first
        "moe_lowrank_r8_m64_s0_k8",
        "moe_lowrank_r8_m64_s4_k4",
        "mlp_h16",
    ]
    assert fig.axes[0].get_legend() is None  # one legend for both panels
    for ax in fig.axes:
        assert (ax.get_xlabel(), ax.get_ylabel()) == ("Epoch", "Validation FVU (log scale)")
        assert ax.get_yscale() == "log"


def rendered_figures(tables, tmp_path):
    """Every figure function's figure, from the synthetic tables."""
    best, curves, advantage = tables
    out = {"pdf": str(tmp_path / "f.pdf"), "png": str(tmp_path / "f.png")}
    yield from (getattr(figures, name)(best, name, **out) for name in BEST_TABLE_FIGURES)
    yield figures.learning_curves(curves, "curves", **out)
    yield figures.paper_comparison(best, paper_rows(), "paper", **out)
    yield figures.layer_sweep(build_tables(layers=(1, 2))[2], "sweep", **out)
    both = pd.concat(
        [advantage.assign(variant="pretrained"), advantage.assign(variant="random weights")], ignore_index=True
    )
    yield figures.control(both, ["pretrained", "random weights"], "control", **out)


def test_every_axis_label_is_in_words(tables, tmp_path):
    """Labels are words, not column names: capitalised, no underscore, and log axes say so."""
    labelled = 0
    for fig in rendered_figures(tables, tmp_path):
        for ax in fig.axes:
            for label, scale in ((ax.get_xlabel(), ax.get_xscale()), (ax.get_ylabel(), ax.get_yscale())):
                assert label and label[0].isupper() and "_" not in label, (fig.texts, label)
                assert ("log scale" in label) == (scale == "log"), label
                labelled += 1
    assert labelled == 2 * 13  # both labels of every panel of the 9 figures (4 have two panels)


def test_verdict_figure_shows_every_size_and_word(tmp_path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    by_seed = pd.DataFrame(
        [
            {
                "model": "tiny",
                "layer": 1,
                "data": data,
                "student": student,
                "seed": seed,
                "active_neurons": active,
                "best_fvu": 0.5,
                "matching_mlp_width": active * value,
                "advantage": value + 0.1 * seed,
            }
            for student, active in (("moe_lowrank_r8_m64_s4_k4", 8), ("moe_lowrank_r8_m64_s8_k8", 16))
            for data, value in (("activations", 2.0), ("gaussian", 1.0))
            for seed in range(3)
        ]
    )
    check = pd.DataFrame(
        [
            {
                "model": "tiny",
                "layer": 1,
                "data": d,
                "student": s,
                "seed": 0,
                "kind": "mlp" if s.startswith("mlp") else "moe",
                "fvu_change": 0.01,
                "converged": not s.endswith("k8"),
                "advantage_long": 2.0,
            }
            for d in ("activations", "gaussian")
            for s in [*set(by_seed.student), "mlp_h8"]
        ]
    )
    table = verdict_table(by_seed, check, confidence=0.95, tolerance=0.03)
    assert list(table.verdict) == ["supports", "undecided"]  # the second size failed the budget check
    pdf, png = tmp_path / "verdict.pdf", tmp_path / "verdict.png"
    fig = figures.verdict(table, by_seed, "tiny", str(pdf), str(png))
    assert_rendered(pdf, png)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == ["supports", "undecided"]
    # every seed's advantage is a dot, on real data left of each size and on the Gaussian right of it
    dots = sorted(_key(x, y) for c in ax.collections if len(c.get_offsets()) == 3 for x, y in c.get_offsets())
    expected = [
        _key(x + (-0.12 if data == "activations" else 0.12), value)
        for x, student in enumerate(["moe_lowrank_r8_m64_s4_k4", "moe_lowrank_r8_m64_s8_k8"])
        for data in ("activations", "gaussian")
        for value in by_seed[(by_seed.student == student) & (by_seed.data == data)].advantage
    ]
    assert dots == sorted(expected)
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "MoE: 4 shared + 4 of 64 experts\n(8 active neurons)",
        "MoE: 8 shared + 8 of 64 experts\n(16 active neurons)",
    ]
    assert "advantage" in ax.get_ylabel().lower()
    one = figures.verdict(table.head(1), by_seed, "tiny", str(tmp_path / "one.pdf"), str(tmp_path / "one.png"))
    for figure in (fig, one):  # the labels and the key read whole, on a one-size panel too
        renderer, frame = FigureCanvasAgg(figure).get_renderer(), figure.bbox  # a canvas again: saving closed it
        for text in (figure.axes[0].yaxis.label, *figure.texts):  # the figure's texts: its title and key
            box = text.get_window_extent(renderer)
            assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, text
    # each side's bar as verdict.csv gives it: the measured interval of the first size with a cap at each end; the
    # unconverged MoE of the second size a lower bound, its bar from the interval's bottom to the top of the axis
    assert table.real_high.iloc[1] == math.inf and table.real_low.iloc[1] > 0
    bars = drawn_bars(ax)
    assert bars[_key(-0.12, table.advantage_real.iloc[0])] == ("o", (table.real_low.iloc[0], table.real_high.iloc[0]))
    assert bars[_key(1 - 0.12, table.advantage_real.iloc[1])] == ("^", (table.real_low.iloc[1], ax.get_ylim()[1]))
    assert ends_drawn(ax, 1 - 0.12) == {table.real_low.iloc[1]: "_", ax.get_ylim()[1]: CARETUPBASE}
    assert ends_drawn(ax, -0.12) == {table.real_low.iloc[0]: "_", table.real_high.iloc[0]: "_"}


def by_kind_table() -> pd.DataFrame:
    """fvu_by_kind.csv by hand: a padding control (`tiny-padded`) and its base (`tiny`), 2 seeds, 2 learning
    rates, the main budget (4 epochs) and a budget check (8, to be left out); the control's pad rows are 60%
    of its rows and 90% of its Var(y)."""
    rows = []
    students = ["mlp_h4", "mlp_h8", "mlp_h16", "moe_lowrank_r8_m64_s2_k2", "moe_lowrank_r8_m64_s4_k4"]
    for model, student, seed, lr, epochs in product(["tiny", "tiny-padded"], students, [0, 1], [1e-3, 3e-3], [4, 8]):
        spec = parse_student(student)
        size = active_neurons(spec)
        token = size**-0.5 * (0.7 if spec["kind"] == "moe" else 1.0) * (1 + lr * 100) * (1 + seed / 10)
        key = {"model": model, "layer": 1, "data": "activations", "student": student, "epochs": epochs}
        key |= {"lr": lr, "seed": seed, "kind": spec["kind"], "active_neurons": size, "families": "main"}
        if model == "tiny":
            parts = {"all": (100, 1.0, token), "token": (100, 1.0, token)}
        else:  # pads are easy: the all-rows FVU is mostly the pads' small one
            token *= 1.2
            pad = token / 20
            whole = 0.9 * pad + 0.1 * token
            parts = {"all": (250, 1.0, whole), "token": (100, 0.1, token), "pad": (150, 0.9, pad)}
        for row_kind, (count, share, fvu) in parts.items():
            rows.append({**key, "row_kind": row_kind, "rows": count, "variance_share": share})
            rows[-1] |= {"fvu": fvu * share if row_kind != "all" else fvu, "fvu_own": fvu}
    return pd.DataFrame(rows)


def test_what_fvu_measures_shows_three_measures_and_the_pad_share(tmp_path):
    table = by_kind_table()
    table.to_csv(tmp_path / "fvu_by_kind.csv", index=False)
    table = pd.read_csv(tmp_path / "fvu_by_kind.csv")  # as a rule would read it
    pdf, png = tmp_path / "w.pdf", tmp_path / "w.png"
    fig = figures.what_fvu_measures(table, "tiny-padded", "tiny", 4, "tiny layer 1: what the FVU measures", pdf, png)
    assert_rendered(pdf, png)
    ax = fig.axes[0]
    drawn = [line for line in ax.lines if len(line.get_xdata()) > 1]
    assert len(drawn) == 2 * 3  # MLP and MoE, each measured three ways
    values = {round(float(y), 9) for line in drawn for y in line.get_ydata()}
    # MLP of 8, best learning rate (1e-3) at 4 epochs, mean over seeds 0 and 1 of each measure
    token = np.mean([8**-0.5 * 1.1 * (1 + s / 10) for s in (0, 1)])
    padded_token = 1.2 * token
    for expected in (token, padded_token, 0.9 * padded_token / 20 + 0.1 * padded_token):
        assert round(float(expected), 9) in values
    assert ax.get_title().endswith("\npad rows: 60% of the rows, 90% of Var(y)")
    assert ax.get_xlabel() == "Active neurons (log scale)"


@pytest.mark.parametrize(
    ("student", "label"),
    [
        ("moe_lowrank_r128_m4096_s32_k32", "MoE: 32 shared + 32 of 4,096 experts"),
        # 8 active neurons: 4 shared + 2 experts of width 2
        ("moe_fullrank_m64_s4_k2_e2", "MoE: 4 shared + 2 of 64 experts of 2 neurons, full-rank router"),
        ("moe_product_key_r8_m256_s0_k4", "MoE: 0 shared + 4 of 256 experts, product-key router"),
        ("mlp_h32", "MLP: 32 neurons"),
    ],
)
def test_verdict_tick_labels_read_students_with_the_grammar(student, label):
    assert figures.student_words(student) == label


def test_the_ladder_figure_labels_its_fvu_axis_when_every_fvu_lies_within_one_decade(tmp_path):
    """FVUs between 0.3 and 0.6 have no major tick on a log axis: the minor ticks carry the labels."""
    runs = pd.DataFrame(
        [
            {"data": data, "student": student, "epochs": epochs, "seed": 0, "best_fvu": fvu, "families": "main"}
            for data in ("activations", "gaussian")
            for student, start in (("mlp_h64", 0.6), ("moe_lowrank_r128_m1024_s32_k32", 0.55))
            for epochs, fvu in ((12, start), (24, start * 0.8), (48, start * 0.7))
        ]
    )
    fig = figures.ladder(runs, 0.03, "within a decade", tmp_path / "l.pdf", tmp_path / "l.png")
    fig.canvas.draw()  # tick labels are laid out, and hidden or shown, when the figure is drawn
    for ax in fig.axes:  # both panels, not only the first: a shared axis would leave the second one bare
        low, high = ax.get_ylim()
        ticks = ax.get_yticklabels() + ax.get_yticklabels(minor=True)
        shown = [t.get_text() for t in ticks if low <= t.get_position()[1] <= high and t.get_text() and t.get_visible()]
        assert len(shown) >= 2, shown


def drawn_bars(ax) -> dict[tuple[float, float], tuple[str, tuple[float, float] | None]]:
    """Each errorbar's point (x, y) -> its marker and the drawn ends of its bar (None: no bar)."""
    bars = {}
    for container in ax.containers:
        line = container.lines[0]
        point = _key(line.get_xdata()[0], line.get_ydata()[0])
        ends = None
        if container.has_yerr:
            (segment,) = container.lines[2][-1].get_segments()
            ends = tuple(sorted(float(y) for _, y in segment))
        bars[point] = (line.get_marker(), ends)
    return bars


def ends_drawn(ax, x: float) -> dict[float, object]:
    """The markers drawn at the ends of the bar at `x`: "_" a cap at a finite end, a caret an open end's arrowhead."""
    return {
        float(line.get_ydata()[0]): line.get_marker()
        for line in ax.get_lines()
        if len(line.get_xdata()) == 1
        and abs(line.get_xdata()[0] - x) < 1e-9
        and line.get_linestyle() == "None"
        and line.get_marker() in ("_", CARETUPBASE, CARETDOWNBASE)
    }


def verdict_row(student: str, active: int, real: tuple, gaussian: tuple, word: str, converged: bool) -> dict:
    """One row of verdict.csv by hand: (advantage, low, high) of each side."""
    row = {"model": "tiny", "layer": 1, "student": student, "active_neurons": active, "verdict": word}
    row |= {"converged": converged, "advantage_real": real[0], "real_low": real[1], "real_high": real[2]}
    return row | {"advantage_gaussian": gaussian[0], "gaussian_low": gaussian[1], "gaussian_high": gaussian[2]}


def seeds_of(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"model": r["model"], "layer": r["layer"], "student": r["student"], "data": data, "seed": 0}
            | {"advantage": r[f"advantage_{side}"]}
            for r in rows
            for side, data in (("real", "activations"), ("gaussian", "gaussian"))
        ]
    )


def test_the_verdict_figure_draws_an_upper_bound_to_the_bottom_and_bounds_only_as_a_point(tmp_path):
    rows = [
        verdict_row("moe_lowrank_r8_m64_s4_k4", 8, (0.7, 0.0, 0.9), (1.1, 1.0, 1.2), "contradicts", True),
        verdict_row("moe_lowrank_r8_m64_s8_k8", 16, (1.3, 0.0, math.inf), (1.0, 0.0, math.inf), "undecided", False),
    ]
    fig = figures.verdict(pd.DataFrame(rows), seeds_of(rows), "t", str(tmp_path / "v.pdf"), str(tmp_path / "v.png"))
    (ax,) = fig.axes
    bottom, top = ax.get_ylim()
    bars = drawn_bars(ax)
    # an upper bound [0, 0.9]: from the bottom of the axis up to 0.9, an arrowhead at the bottom, a cap at 0.9
    assert bars[_key(-0.12, 0.7)] == ("v", (bottom, 0.9))
    assert ends_drawn(ax, -0.12) == {bottom: CARETDOWNBASE, 0.9: "_"}
    assert bars[_key(0.12, 1.1)] == ("o", (1.0, 1.2))
    # open both ways: no bar, no end, a point and a note on each side
    assert bars[_key(1 - 0.12, 1.3)] == ("o", None) and bars[_key(1 + 0.12, 1.0)] == ("o", None)
    assert ends_drawn(ax, 1 - 0.12) == {} and ends_drawn(ax, 1 + 0.12) == {}
    assert [t.get_text() for t in ax.texts] == ["contradicts", "bounds\nonly", "bounds\nonly", "undecided"]
    # the words sit above the panel (axes fraction 1), clear of every bar
    words = [t for t in ax.texts if t.get_text() in ("contradicts", "undecided")]
    assert all(t.xycoords == ("data", "axes fraction") and t.xy[1] == 1.0 for t in words)


def test_the_verdict_figure_draws_the_decisive_runs_table_as_it_says(tmp_path):
    """reference/verdict_run_96ep/verdict.csv: on non-padding tokens a real lower bound [1.26, inf) beside a measured
    Gaussian interval, and on padded positions bounds only on both sides."""
    run = REPO / "reference" / "verdict_run_96ep"
    table, by_seed = pd.read_csv(run / "verdict.csv"), pd.read_csv(run / "advantage_by_seed.csv")
    fig = figures.verdict(table, by_seed, "decisive", str(tmp_path / "v.pdf"), str(tmp_path / "v.png"))
    assert [ax.get_title() for ax in fig.axes] == ["gemma3-270m layer 9", "gemma3-270m-padded layer 9"]
    for ax, (_, row) in zip(fig.axes, table.sort_values(["model", "layer"]).iterrows(), strict=True):
        assert [t.get_text() for t in ax.texts if t.get_text() in figures.VERDICT_COLORS] == [row.verdict]
        for stem, _, offset, _, _ in figures.VERDICT_SIDES:
            low, high = row[f"{stem}_low"], row[f"{stem}_high"]
            marker, ends = drawn_bars(ax)[_key(offset, row[f"advantage_{stem}"])]
            if low == 0 and high == math.inf:
                assert (marker, ends) == ("o", None)
            else:  # never a finite top where the table says inf, and the table's finite ends exactly
                assert ends == (low if low > 0 else ax.get_ylim()[0], high if high < math.inf else ax.get_ylim()[1])
                assert marker == figures.bound_marker(low, high)
    real = table.iloc[0]
    assert real.real_high == math.inf and ends_drawn(fig.axes[0], -0.12)[fig.axes[0].get_ylim()[1]] == CARETUPBASE


def test_a_tiny_difference_does_not_fill_the_advantage_axis(tmp_path):
    rows = [verdict_row("moe_lowrank_r8_m64_s4_k4", 8, (1.10, 1.09, 1.11), (1.11, 1.10, 1.12), "undecided", True)]
    fig = figures.verdict(pd.DataFrame(rows), seeds_of(rows), "t", str(tmp_path / "v.pdf"), str(tmp_path / "v.png"))
    low, high = fig.axes[0].get_ylim()
    assert high - low >= figures.MIN_ADVANTAGE_SPAN and low <= 1.0  # no advantage (1) on the axis, 1% stays small


def test_the_ladder_legend_names_students_in_words_mlps_by_width_then_moes_and_says_what_its_bars_are(tmp_path):
    students = ["moe_lowrank_r128_m1024_s32_k32", "mlp_h128", "mlp_h32", "mlp_h64"]  # by name: not the wanted order
    runs = pd.DataFrame(
        [
            {"data": d, "student": s, "epochs": e, "seed": seed, "best_fvu": 0.5 / (i + 1) / e**0.1, "families": "main"}
            for d in ("activations", "gaussian")
            for i, s in enumerate(students)
            for e in (8, 16, 32)
            for seed in (0, 1, 2)
        ]
    )
    fig = figures.ladder(runs, 0.03, "tiny layer 1", tmp_path / "l.pdf", tmp_path / "l.png")
    legend = fig.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "MLP: 32 neurons",
        "MLP: 64 neurons",
        "MLP: 128 neurons",
        "MoE: 32 shared + 32 of 1,024 experts",
    ]
    assert "bar: min to max over seeds" in fig._suptitle.get_text() and "mean over 3 seeds" in fig._suptitle.get_text()
    # each errorbar still carries its student's name, and spans that student's seeds at each budget
    titles = {title: data for data, title in figures.DATA_TITLES.items()}
    for ax in fig.axes:
        for container in ax.containers:
            mine = runs[(runs.student == container.get_label()) & (runs.data == titles[ax.get_title()])]
            spans = sorted((min(s[:, 1]), max(s[:, 1])) for s in container.lines[2][-1].get_segments())
            expected = sorted((g.best_fvu.min(), g.best_fvu.max()) for _, g in mine.groupby("epochs"))
            assert np.allclose(spans, expected)


def test_no_function_of_the_figures_module_is_over_60_lines():
    tree = ast.parse((REPO / "src" / "secret_moe" / "figures.py").read_text())
    lengths = {f.name: f.end_lineno - f.lineno + 1 for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    assert max(lengths.values()) <= 60, sorted(lengths.items(), key=lambda item: -item[1])[:3]
