# Figures per (model, layer) from the results tables; `figures/all` lists every one of them.


localrules:
    aggregate_runs,
    plot_figure,
    plot_layer_sweep,
    plot_control,
    plot_verdict,
    all_figures,  # seconds of CPU: not worth a cluster job


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
    log:
        "logs/plot_figure/{model}/layer{layer}/{figure}.log",
    wildcard_constraints:
        figure="|".join(name for name in FIGURE_CAPTIONS if name != "layer_sweep"),
    conda:
        ENV
    params:
        hf_id=lambda w: config["models"][w.model].get("hf_id"),
        epochs=config["distill"]["epochs"],
        caption=lambda w: FIGURE_CAPTIONS[w.figure],
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
    log:
        "logs/plot_control/{model}.log",
    conda:
        ENV
    params:
        pair=lambda w: controls(config)[w.model],
    script:
        "../scripts/plot_control.py"


rule plot_verdict:
    input:
        verdict="results/aggregate/verdict.csv",
        by_seed="results/aggregate/advantage_by_seed.csv",
    output:
        pdf="figures/verdict.pdf",
        png=report("figures/verdict.png", category="Verdict", caption="../report/verdict_figure.rst"),
    log:
        "logs/plot_verdict.log",
    conda:
        ENV
    script:
        "../scripts/plot_verdict.py"


rule all_figures:
    input:
        all_figure_files(),
    output:
        "figures/all",
    log:
        "logs/all_figures.log",
    run:
        Path(output[0]).write_text("\n".join(input) + "\n")
