# Gather every run into tidy tables: the per-point best over learning rates as the paper computes it, per
# seed and over seeds, the MoE advantage with its interval, the budget check and the verdict.


rule aggregate_runs:
    input:
        distill_metrics(),
    output:
        runs=report("results/aggregate/runs.csv", category="Results", caption="../report/runs.rst"),
        best=report("results/aggregate/best.csv", category="Results", caption="../report/best.rst"),
        best_by_seed="results/aggregate/best_by_seed.csv",
        curves="results/aggregate/curves.csv",
        moe_advantage=report(
            "results/aggregate/moe_advantage.csv", category="Results", caption="../report/advantage.rst"
        ),
        advantage_by_seed="results/aggregate/advantage_by_seed.csv",
        budget_check=report(
            "results/aggregate/budget_check.csv", category="Verdict", caption="../report/budget_check.rst"
        ),
        verdict=report("results/aggregate/verdict.csv", category="Verdict", caption="../report/verdict.rst"),
    log:
        "logs/aggregate_runs.log",
    conda:
        ENV
    params:
        families=[(model, layer, students_by_family(config, model, layer)) for model, layer in model_layers(config)],
        epochs=config["distill"]["epochs"],
        budget_check=budget_check(config),
        confidence=config["verdict"]["confidence"],
    script:
        "../scripts/aggregate_runs.py"
