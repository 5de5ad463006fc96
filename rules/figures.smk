# Figures per (model, layer) from the results tables; `figures/all` lists every one of them.

localrules: aggregate_runs, plot_figure, plot_layer_sweep, plot_control, all_figures  # seconds of CPU: not worth a cluster job

FIGURE_CAPTIONS = {
    "fvu_vs_active": "Validation FVU vs active neurons: dense MLP vs MoE students, real activations vs Gaussian control.",
    "learning_curves": "Validation FVU per epoch of each main-comparison student, at its best learning rate.",
    "router_comparison": "Low-rank routers of several ranks vs the full-rank router at equal active neurons.",
    "shared_split": "FVU at fixed active neurons as the share held by the always-on shared MLP varies.",
    "expert_width": "FVU at fixed active neurons as each expert's hidden width grows (fewer, wider experts active).",
    "num_experts": "FVU at fixed active neurons as the number of experts m grows.",
    "paper_comparison": "This run's best FVU points next to the published ones for the same teacher and layer.",
    "layer_sweep": "MoE advantage per layer: the dense MLP width needed to match the MoE's FVU, over its active neurons.",
}
PAPER_TABLE = str(Path(workflow.basedir) / "reference" / "paper_fvu_summary.csv")


def figures_for(model, layer):
    families = students_by_family(config, model, layer)
    if "main" not in families:  # a sweep-only layer: shown in the model's layer_sweep figure
        return []
    names = ["fvu_vs_active", "learning_curves"]
    names += [figure for figure, family in [("router_comparison", "router_rank"), ("shared_split", "shared_split"),
                                            ("expert_width", "expert_width"), ("num_experts", "num_experts")]
              if family in families]
    import pandas as pd

    paper = pd.read_csv(PAPER_TABLE)
    spec = config["models"][model]
    in_paper = ((paper.model == spec.get("hf_id")) & (paper.layer == layer)).any()
    if in_paper and spec.get("init", "pretrained") == "pretrained":
        names.append("paper_comparison")
    return names


def all_figure_files():
    per_layer = [
        f"figures/{model}/layer{layer}/{name}.{ext}"
        for model, layer in model_layers(config)
        for name in figures_for(model, layer)
        for ext in ("pdf", "png")
    ]
    sweep = config["experiments"].get("layer_sweep", {})
    per_model = [f"figures/{sweep['model']}/layer_sweep.{ext}" for ext in ("pdf", "png")] if sweep.get("enabled") else []
    control = [f"figures/{model}/control.{ext}" for model in controls(config) for ext in ("pdf", "png")]
    return per_layer + per_model + control


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
        figure="|".join(name for name in FIGURE_CAPTIONS if name != "layer_sweep"),
    log:
        "logs/plot_figure/{model}/layer{layer}/{figure}.log",
    conda:
        ENV
    script:
        "../scripts/plot_figure.py"


rule plot_layer_sweep:
    input:
        advantage="results/aggregate/moe_advantage.csv",
    output:
        pdf="figures/{model}/layer_sweep.pdf",
        png=report(
            "figures/{model}/layer_sweep.png",
            category="Figures",
            subcategory="{model} layer sweep",
            caption="../report/layer_sweep.rst",
        ),
    log:
        "logs/plot_layer_sweep/{model}.log",
    conda:
        ENV
    script:
        "../scripts/plot_layer_sweep.py"


rule plot_control:
    input:
        advantage="results/aggregate/moe_advantage.csv",
    output:
        pdf="figures/{model}/control.pdf",
        png=report(
            "figures/{model}/control.png",
            category="Figures",
            subcategory="{model} control",
            caption="../report/control.rst",
        ),
    params:
        pair=lambda w: controls(config)[w.model],
    log:
        "logs/plot_control/{model}.log",
    conda:
        ENV
    script:
        "../scripts/plot_control.py"


rule all_figures:
    input:
        all_figure_files(),
    output:
        "figures/all",
    log:
        "logs/all_figures.log",
    run:
        Path(output[0]).write_text("\n".join(input) + "\n")
