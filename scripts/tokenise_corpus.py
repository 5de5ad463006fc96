"""Rule tokenise_corpus: token ids per split, short lines dropped, long ones cut."""

from secret_moe.logs import log_to
from secret_moe.steps.tokens import tokenise_corpus

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
tokenise_corpus(
    sm.input.tokenizer, {"train": sm.output.train, "validation": sm.output.validation}, sm.params.corpus, sm.params.seed
)
