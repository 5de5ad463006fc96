# Gather every run into one tidy table; the per-point best over learning rates as the paper computes it.


rule aggregate_runs:
    input:
        distill_metrics(),
    output:
        runs=report("results/aggregate/runs.csv", category="Results", caption="../report/runs.rst"),
        best=report("results/aggregate/best.csv", category="Results", caption="../report/best.rst"),
        curves="results/aggregate/curves.csv",
        advantage=report("results/aggregate/moe_advantage.csv", category="Results", caption="../report/advantage.rst"),
    log:
        "logs/aggregate_runs.log",
    conda:
        ENV
    params:
        families=[(model, layer, students_by_family(config, model, layer)) for model, layer in model_layers(config)],
    script:
        "../scripts/aggregate_runs.py"
