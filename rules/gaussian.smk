# The Gaussian control: fit mean and covariance of the train inputs, sample stores of the same size.


rule fit_gaussian:
    input:
        path("activations", split="train"),
    output:
        path("moments"),
    log:
        "logs/fit_gaussian/{model}/layer{layer}.log",
    benchmark:
        "logs/benchmarks/fit_gaussian/{model}/layer{layer}.tsv"
    priority: STORE_PRIORITY
    conda:
        ENV
    resources:
        mem_mb=mem_mb("fit_gaussian"),
    params:
        block_rows=config["gaussian"]["block_rows"],
    script:
        "../scripts/fit_gaussian.py"


rule sample_gaussian:
    input:
        moments=path("moments"),
        teacher=path("teacher"),
        like=path("activations"),
    output:
        directory(path("gaussian")),
    log:
        "logs/sample_gaussian/{model}/layer{layer}/{split}.log",
    benchmark:
        "logs/benchmarks/sample_gaussian/{model}/layer{layer}/{split}.tsv"
    priority: STORE_PRIORITY
    conda:
        ENV
    resources:
        mem_mb=mem_mb("sample_gaussian"),
    params:
        # each split draws its own points: seed + gaussian.split_seeds[split]
        seed=lambda w: config["seed"] + config["gaussian"]["split_seeds"][w.split],
        device=config["device"],
    script:
        "../scripts/sample_gaussian.py"
