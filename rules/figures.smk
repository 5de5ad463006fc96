# Figures per (model, layer) from the results tables; `figures/all` lists every one of them.


rule plot_figure:
    input:
        best=path("table", name="best"),
        curves=path("table", name="curves"),
        paper=PAPER_TABLE,
    output:
        pdf=path("figure", ext="pdf"),
        png=report(
            path("figure", ext="png"),
            category="Figures",
            subcategory="{model} layer {layer}",
            caption="../report/figure.rst",
        ),
    log:
        "logs/plot_figure/{model}/layer{layer}/{figure}.log",
    wildcard_constraints:
        figure="|".join(LAYER_FIGURES),
    conda:
        ENV
    params:
        hf_id=lambda w: config["models"][w.model].get("hf_id"),
        epochs=config["distill"]["epochs"],
        caption=lambda w: CAPTIONS[w.figure],
    script:
        "../scripts/plot_figure.py"


rule plot_layer_sweep:
    input:
        advantage=path("table", name="moe_advantage"),
    output:
        pdf=path("model_figure", figure="layer_sweep", ext="pdf"),
        png=report(
            path("model_figure", figure="layer_sweep", ext="png"),
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
        advantage=path("table", name="moe_advantage"),
    output:
        pdf=path("model_figure", figure="control", ext="pdf"),
        png=report(
            path("model_figure", figure="control", ext="png"),
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
        verdict=path("table", name="verdict"),
        by_seed=path("table", name="advantage_by_seed"),
    output:
        pdf=path("summary_figure", figure="verdict", ext="pdf"),
        png=report(
            path("summary_figure", figure="verdict", ext="png"),
            category="Verdict",
            caption="../report/verdict_figure.rst",
        ),
    log:
        "logs/plot_verdict.log",
    conda:
        ENV
    script:
        "../scripts/plot_verdict.py"


rule plot_what_fvu_measures:
    input:
        by_kind=path("table", name="fvu_by_kind"),
    output:
        pdf=path("figure", figure="what_fvu_measures", ext="pdf"),
        png=report(
            path("figure", figure="what_fvu_measures", ext="png"),
            category="Figures",
            subcategory="{model} layer {layer}",
            caption="../report/what_fvu_measures.rst",
        ),
    log:
        "logs/plot_what_fvu_measures/{model}/layer{layer}.log",
    conda:
        ENV
    params:
        base=lambda w: config["models"][w.model]["same_as"],
        epochs=config["distill"]["epochs"],
    script:
        "../scripts/plot_what_fvu_measures.py"


rule plot_ladder:
    input:
        runs=path("table", name="runs"),
    output:
        pdf=path("figure", figure="ladder", ext="pdf"),
        png=report(
            path("figure", figure="ladder", ext="png"),
            category="Verdict",
            subcategory="{model} layer {layer}",
            caption="../report/ladder_figure.rst",
        ),
    log:
        "logs/plot_ladder/{model}/layer{layer}.log",
    conda:
        ENV
    params:
        tolerance=config["experiments"].get("budget_check", {}).get("tolerance"),
    script:
        "../scripts/plot_ladder.py"


rule plot_scan:
    input:
        profile=path("profile"),
    output:
        pdf=path("model_figure", figure="scan", ext="pdf"),
        png=report(
            path("model_figure", figure="scan", ext="png"),
            category="Scan",
            subcategory="{model}",
            caption="../report/scan.rst",
        ),
    log:
        "logs/plot_scan/{model}.log",
    conda:
        ENV
    script:
        "../scripts/plot_scan.py"


rule all_figures:
    input:
        targets.all_figure_files(config, PAPER_TABLE),
    output:
        path("all_figures"),
    log:
        "logs/all_figures.log",
    run:
        Path(output[0]).write_text("\n".join(input) + "\n")
