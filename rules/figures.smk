# Figures per (model, layer) from the results tables; `figures/all` lists every one of them.

FIGURE_CAPTIONS = {
    "fvu_vs_active": "Validation FVU vs active neurons: dense MLP vs MoE students, real activations vs Gaussian control.",
    "learning_curves": "Validation FVU per epoch for every student (best learning rate not selected: all runs).",
    "router_comparison": "Low-rank routers of several ranks vs the full-rank router at equal active neurons.",
    "shared_split": "FVU at fixed active neurons as the share held by the always-on shared MLP varies.",
    "paper_comparison": "This run's best FVU points next to the published ones for the same teacher and layer.",
}
PAPER_TABLE = str(Path(workflow.basedir) / "reference" / "paper_fvu_summary.csv")


def figures_for(model, layer):
    families = students_by_family(config, model)
    names = ["fvu_vs_active", "learning_curves"]
    names += [n for n, fam in [("router_comparison", "router_rank"), ("shared_split", "shared_split")] if fam in families]
    import pandas as pd

    paper = pd.read_csv(PAPER_TABLE)
    if ((paper.model == config["models"][model].get("hf_id")) & (paper.layer == layer)).any():
        names.append("paper_comparison")
    return names


def all_figure_files():
    return [
        f"figures/{model}/layer{layer}/{name}.{ext}"
        for model, layer in model_layers()
        for name in figures_for(model, layer)
        for ext in ("pdf", "png")
    ]


rule plot_figure:
    input:
        best="results/aggregate/best.csv",
        curves="results/aggregate/curves.csv",
        paper=PAPER_TABLE,
    output:
        pdf="figures/{model}/layer{layer}/{figure}.pdf",
        png=report(
            "figures/{model}/layer{layer}/{figure}.png",
            category="Figures",
            subcategory="{model} layer {layer}",
            caption="../report/figure.rst",
        ),
    params:
        hf_id=lambda w: config["models"][w.model].get("hf_id"),
        caption=lambda w: FIGURE_CAPTIONS[w.figure],
    wildcard_constraints:
        figure="|".join(FIGURE_CAPTIONS),
    log:
        "logs/plot_figure/{model}/layer{layer}/{figure}.log",
    conda:
        ENV
    script:
        "../scripts/plot_figure.py"


rule all_figures:
    input:
        all_figure_files(),
    output:
        "figures/all",
    log:
        "logs/all_figures.log",
    run:
        Path(output[0]).write_text("\n".join(input) + "\n")
