# The Gaussian control: fit mean and covariance of the train inputs, sample stores of the same size.


rule fit_gaussian:
    input:
        "results/activations/{model}/layer{layer}/train.zarr",
    output:
        "results/gaussian/{model}/layer{layer}/moments.npz",
    log:
        "logs/fit_gaussian/{model}/layer{layer}.log",
    priority: STORE_PRIORITY
    conda:
        ENV
    params:
        block_rows=config["gaussian"]["block_rows"],
    script:
        "../scripts/fit_gaussian.py"


rule sample_gaussian:
    input:
        moments="results/gaussian/{model}/layer{layer}/moments.npz",
        teacher="results/teacher/{model}/layer{layer}",
        like="results/activations/{model}/layer{layer}/{split}.zarr",
    output:
        directory("results/gaussian/{model}/layer{layer}/{split}.zarr"),
    log:
        "logs/sample_gaussian/{model}/layer{layer}/{split}.log",
    priority: STORE_PRIORITY
    conda:
        ENV
    params:
        # each split draws its own points: seed + gaussian.split_seeds[split]
        seed=lambda w: config["seed"] + config["gaussian"]["split_seeds"][w.split],
        device=config["device"],
    script:
        "../scripts/sample_gaussian.py"
