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
        seed=lambda w: targets.gaussian_seed(config, w.split),
        device=config["device"],
    script:
        "../scripts/sample_gaussian.py"


# gaussian.draw_per_seed: each training seed's own sample, drawn like the shared one with a seed of its own
use rule sample_gaussian as sample_gaussian_draw with:
    output:
        directory(path("gaussian_draw")),
    log:
        "logs/sample_gaussian/{model}/layer{layer}/draw{draw}/{split}.log",
    benchmark:
        "logs/benchmarks/sample_gaussian/{model}/layer{layer}/draw{draw}/{split}.tsv"
    params:
        seed=lambda w: targets.gaussian_seed(config, w.split, int(w.draw)),
        device=config["device"],
