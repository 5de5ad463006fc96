# Gather every run into tidy tables: the per-point best over learning rates as the paper computes it, per
# seed and over seeds, the MoE advantage with its interval, the budget check, the verdict, and each run's FVU
# split by row kind (token, special, pad).


rule aggregate_runs:
    input:
        targets.distill_metrics(DISTILL),
    output:
        runs=report(path("table", name="runs"), category="Results", caption="../report/runs.rst"),
        best=report(path("table", name="best"), category="Results", caption="../report/best.rst"),
        best_by_seed=path("table", name="best_by_seed"),
        curves=path("table", name="curves"),
        moe_advantage=report(path("table", name="moe_advantage"), category="Results", caption="../report/advantage.rst"),
        advantage_by_seed=path("table", name="advantage_by_seed"),
        budget_check=report(
            path("table", name="budget_check"), category="Verdict", caption="../report/budget_check.rst"
        ),
        verdict=report(path("table", name="verdict"), category="Verdict", caption="../report/verdict.rst"),
        ladder=report(path("table", name="ladder"), category="Verdict", caption="../report/ladder.rst"),
        fvu_by_kind=report(path("table", name="fvu_by_kind"), category="Results", caption="../report/fvu_by_kind.rst"),
        learning_rates=report(
            path("table", name="learning_rates"), category="Verdict", caption="../report/learning_rates.rst"
        ),
    log:
        "logs/aggregate_runs.log",
    conda:
        ENV
    params:
        families=[(model, layer, students_by_family(config, model, layer)) for model, layer in model_layers(config)],
        epochs=config["distill"]["epochs"],
        budget_check=budget_check(config),
        ladder=ladder_budgets(config),
        confidence=config["verdict"]["confidence"],
    script:
        "../scripts/aggregate_runs.py"
