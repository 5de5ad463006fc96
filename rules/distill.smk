# One job per (model, layer, data, student, learning rate, seed): distil the teacher into a student.


rule train_student:
    input:
        train=lambda w: data_store(w.data, "train"),
        validation=lambda w: data_store(w.data, "validation"),
    output:
        metrics="results/distill/{model}/layer{layer}/{data}/{student}/lr{lr}_seed{seed}/metrics.json",
        weights="results/distill/{model}/layer{layer}/{data}/{student}/lr{lr}_seed{seed}/student.safetensors",
    log:
        "logs/train_student/{model}/layer{layer}/{data}/{student}/lr{lr}_seed{seed}.log",
    benchmark:
        "logs/benchmarks/train_student/{model}/layer{layer}/{data}/{student}/lr{lr}_seed{seed}.tsv"
    conda:
        ENV
    threads: config["distill"]["threads"]
    resources:
        mem_mb=4000,
    params:
        # only the keys a run reads: editing the grid (widths, learning rates) must not redo finished runs
        distill={key: config["distill"][key] for key in ("epochs", "batch_size", "group_chunks", "in_memory")},
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/train_student.py"
