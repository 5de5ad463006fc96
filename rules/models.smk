# Materialise each teacher LLM to a local folder once (GGUF-loaded models refuse save_pretrained).


rule prepare_model:
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
        model="resources/models/{model}",
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
