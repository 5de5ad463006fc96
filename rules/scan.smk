# The layer profile of `secret-moe scan` (docs/scan.md): statistics of each layer's inputs beside those of their
# Gaussian twin, then one row per layer with its verdict and its statistics.


rule describe_inputs:
    input:
        real=path("activations", split="train"),
        twin=path("gaussian", split="train"),
    output:
        path("input_stats"),
    log:
        "logs/describe_inputs/{model}/layer{layer}.log",
    benchmark:
        "logs/benchmarks/describe_inputs/{model}/layer{layer}.tsv"
    conda:
        ENV
    resources:
        mem_mb=mem_mb("describe_inputs"),
    params:
        projections=config["scan"]["projections"],
        block_rows=config["scan"]["block_rows"],
        seed=config["seed"],
    script:
        "../scripts/describe_inputs.py"


rule profile_layers:
    input:
        verdict=path("table", name="verdict"),
        ladder=path("table", name="ladder"),
        stats=lambda w: [
            path("input_stats", model=w.model, layer=layer) for layer in targets.scan_layers(config, w.model)
        ],
    output:
        report(path("profile"), category="Scan", subcategory="{model}", caption="../report/profile.rst"),
    log:
        "logs/profile_layers/{model}.log",
    conda:
        ENV
    params:
        layers=lambda w: targets.scan_layers(config, w.model),
        epochs=config["distill"]["epochs"],
    script:
        "../scripts/profile_layers.py"
