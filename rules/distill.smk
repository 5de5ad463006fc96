# Distillation. Runs that read the same store with the same seed and epochs see the same batches, so a
# bundle of them trains in one process (one start, one store read, one gather per batch); each run then
# gets its own folder, the unit Snakemake tracks: a finished run is never retrained, a new one trains alone.


rule train_students:
    input:
        train=lambda w: targets.data_store(config, w.data, "train", targets.bundle_seed(DISTILL, w)),
        validation=lambda w: targets.data_store(config, w.data, "validation", targets.bundle_seed(DISTILL, w)),
    output:
        temp(directory(path("bundle"))),
    log:
        "logs/train_students/{model}/layer{layer}/{data}/{bundle}.log",
    benchmark:
        "logs/benchmarks/train_students/{model}/layer{layer}/{data}/{bundle}.tsv"
    priority: lambda w: BUNDLES[(w.model, int(w.layer), w.data, w.bundle)][0]["epochs"]
    conda:
        ENV
    threads: config["distill"]["threads"]
    resources:
        mem_mb=mem_mb("train_students"),
    params:
        runs=lambda w: BUNDLES[(w.model, int(w.layer), w.data, w.bundle)],
        distill=distill_params(config),
        seed=config["seed"],
        device=config["device"],
        # the training step's precision (in `distill` too, where it is not float32, for the runs' provenance): a
        # param of its own since the first runs, so that Snakemake's params trigger retrains no finished run
        precision=config["distill"]["precision"],
        # outside the job's output, which Snakemake deletes when the job fails: a rerun continues from it
        checkpoint=path("checkpoint"),
        checkpoint_minutes=config["distill"]["checkpoint_minutes"],
    script:
        "../scripts/train_students.py"


rule collect_run:
    input:
        bundle=lambda w: targets.bundle_of_run(DISTILL, w),
        # the stores again, so that a rebuilt store makes its runs stale although the bundle folder is gone
        train=lambda w: targets.data_store(config, w.data, "train", int(w.seed)),
        validation=lambda w: targets.data_store(config, w.data, "validation", int(w.seed)),
    output:
        metrics=f"{path('run')}/{RUN_FILES[0]}",
        weights=f"{path('run')}/{RUN_FILES[1]}",
    log:
        f"logs/collect_run/{path('run').removeprefix('results/distill/')}.log",
    # before any further training, so that a finished bundle's folder (a temp output) is gone soon; a run left in
    # it when Snakemake stops keeps that bundle on the next invocation (targets.run_finished) and is only copied
    priority: 1000
    conda:
        ENV
    params:
        run=targets.run_of,
        # what decides a run's result: a change here retrains it
        distill=distill_params(config),
        seed=config["seed"],
    script:
        "../scripts/collect_run.py"
