# Materialise each teacher LLM locally once: its tokenizer first (cheap; lets corpus problems fail before
# any weights load), then its weights (GGUF-loaded models refuse save_pretrained, so we save them ourselves).


rule prepare_tokenizer:
    output:
        directory(path("tokenizer")),
    log:
        "logs/prepare_tokenizer/{model}.log",
    benchmark:
        "logs/benchmarks/prepare_tokenizer/{model}.tsv"
    conda:
        ENV
    resources:
        mem_mb=mem_mb("prepare_tokenizer"),
    params:
        spec=lambda w: targets.model_spec(config, w.model),
    script:
        "../scripts/prepare_tokenizer.py"


rule prepare_model:
    input:
        # ordering only: a corpus that tokenises to nothing stops the run before the weights are loaded
        # (ancient: new tokens, e.g. after a max_length change, must not re-materialise the model)
        tokens=ancient([path("tokens", split=split) for split in SPLITS]),
    output:
        directory(path("model")),
    log:
        "logs/prepare_model/{model}.log",
    benchmark:
        "logs/benchmarks/prepare_model/{model}.tsv"
    conda:
        ENV
    resources:
        mem_mb=mem_mb("prepare_model"),
    params:
        spec=lambda w: targets.model_spec(config, w.model),
        seed=config["seed"],
    script:
        "../scripts/prepare_model.py"


rule export_teacher:
    input:
        model=resource("model"),
    output:
        directory(path("teacher")),
    log:
        "logs/export_teacher/{model}/layer{layer}.log",
    benchmark:
        "logs/benchmarks/export_teacher/{model}/layer{layer}.tsv"
    priority: STORE_PRIORITY
    conda:
        ENV
    resources:
        mem_mb=mem_mb("export_teacher"),
    params:
        spec=lambda w: targets.model_spec(config, w.model),
    script:
        "../scripts/export_teacher.py"
