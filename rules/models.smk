# Materialise each teacher LLM locally once: its tokenizer first (cheap; lets corpus problems fail before
# any weights load), then its weights (GGUF-loaded models refuse save_pretrained, so we save them ourselves).


rule prepare_tokenizer:
    output:
        directory("resources/tokenizers/{model}"),
    params:
        spec=model_spec,
    log:
        "logs/prepare_tokenizer/{model}.log",
    conda:
        ENV
    script:
        "../scripts/prepare_tokenizer.py"


rule prepare_model:
    input:
        # ordering only: a corpus that tokenises to nothing stops the run before the weights are loaded
        # (ancient: new tokens, e.g. after a max_length change, must not re-materialise the model)
        tokens=ancient(expand("results/tokens/{{model}}/{split}.zarr", split=SPLITS)),
    output:
        directory("resources/models/{model}"),
    params:
        spec=model_spec,
        seed=config["seed"],
    log:
        "logs/prepare_model/{model}.log",
    benchmark:
        "logs/benchmarks/prepare_model/{model}.tsv"
    resources:
        mem_mb=8000,
    conda:
        ENV
    script:
        "../scripts/prepare_model.py"


rule export_teacher:
    input:
        model=resource("model"),
    output:
        directory("results/teacher/{model}/layer{layer}"),
    params:
        spec=model_spec,
    log:
        "logs/export_teacher/{model}/layer{layer}.log",
    conda:
        ENV
    script:
        "../scripts/export_teacher.py"
