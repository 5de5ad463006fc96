# Run the model up to layer ℓ and stream its MLP inputs x and outputs y into a Zarr store.
# An interrupted job resumes from `<store>.partial`; the finished store is renamed into place.
# With capture.one_pass, capture_layers makes several layers' missing stores in one forward pass instead.


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
        spec=lambda w: targets.model_spec(config, w.model),
        capture=lambda w: targets.capture_config(config, w.model),
        seed=config["seed"],
        device=config["device"],
        # layer -> store; a function of the output, so Snakemake leaves it out of the params it compares (its
        # rerun trigger), and capture_layers, which runs the same script, gives its own
        stores=lambda wildcards, output: {int(wildcards.layer): output[0]},
    script:
        "../scripts/capture_activations.py"


# capture.one_pass: the stores of ONE_PASS_LAYERS (rules/common.smk), all missing when Snakemake starts, come from
# one forward pass per model and split, as the same bytes. A finished store is never an output here, so adding a
# layer never reruns (and so deletes) one; and as this rule is capture_activations with other outputs (same code,
# inputs and params), a store it made is that rule's on later runs, rerun only when they change.
if ONE_PASS_LAYERS:

    ruleorder: capture_layers > capture_activations

    use rule capture_activations as capture_layers with:
        output:
            [directory(path("activations", layer=layer)) for layer in ONE_PASS_LAYERS],
        log:
            "logs/capture_layers/{model}/{split}.log",
        benchmark:
            "logs/benchmarks/capture_layers/{model}/{split}.tsv"
        wildcard_constraints:
            model="|".join(config["capture"]["one_pass"]),
        threads: config["resources"]["capture_layers"]["threads"]
        resources:
            mem_mb=mem_mb("capture_layers"),
        params:
            stores=lambda wildcards, output: dict(zip(ONE_PASS_LAYERS, output)),
