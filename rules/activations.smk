# Run the model up to layer ℓ and stream its MLP inputs x and outputs y into a Zarr store.
# An interrupted job resumes from `<store>.partial`; the finished store is renamed into place.


rule capture_activations:
    input:
        model=resource("model"),
        tokenizer=resource("tokenizer"),
        tokens=resource("tokens"),
    output:
        directory(path("activations")),
    log:
        "logs/capture_activations/{model}/layer{layer}/{split}.log",
    benchmark:
        "logs/benchmarks/capture_activations/{model}/layer{layer}/{split}.tsv"
    priority: STORE_PRIORITY
    conda:
        ENV
    threads: config["resources"]["capture_activations"]["threads"]
    resources:
        mem_mb=mem_mb("capture_activations"),
    params:
        spec=model_spec,
        capture=capture_config,
        seed=config["seed"],
        device=config["device"],
    script:
        "../scripts/capture_activations.py"
