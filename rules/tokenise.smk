# Tokenise the corpus with each model's tokenizer: short lines dropped, long ones cut.


rule tokenise_corpus:
    input:
        tokenizer="resources/tokenizers/{model}",
    output:
        train=directory("results/tokens/{model}/train.zarr"),
        validation=directory("results/tokens/{model}/validation.zarr"),
    log:
        "logs/tokenise_corpus/{model}.log",
    conda:
        ENV
    params:
        corpus=config["corpus"],
        seed=config["seed"],
    script:
        "../scripts/tokenise_corpus.py"
