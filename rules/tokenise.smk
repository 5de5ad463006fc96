# Tokenise the corpus with each model's tokenizer: short lines dropped, long ones cut.


rule tokenise_corpus:
    input:
        tokenizer=path("tokenizer"),
    output:
        train=directory(path("tokens", split="train")),
        validation=directory(path("tokens", split="validation")),
    log:
        "logs/tokenise_corpus/{model}.log",
    benchmark:
        "logs/benchmarks/tokenise_corpus/{model}.tsv"
    conda:
        ENV
    resources:
        mem_mb=mem_mb("tokenise_corpus"),
    params:
        corpus=config["corpus"],
        seed=config["seed"],
    script:
        "../scripts/tokenise_corpus.py"
