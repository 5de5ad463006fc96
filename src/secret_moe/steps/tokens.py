"""Step of rules/tokenise.smk: tokenise the corpus into token stores."""

from __future__ import annotations

from typing import Any

from secret_moe.corpus import load_lines
from secret_moe.models.loading import (
    load_local_tokenizer,
)
from secret_moe.provenance import provenance
from secret_moe.tokenise import corpus_fingerprint, tokenise_lines, write_token_store


def tokenise_corpus(tokenizer_dir: str, outputs: dict[str, str], corpus: dict[str, Any], seed: int) -> None:
    tokenizer = load_local_tokenizer(tokenizer_dir)
    lines = load_lines(corpus, seed)
    for split, out in outputs.items():
        sequences, stats = tokenise_lines(
            lines[split],
            tokenizer,
            min_tokens=corpus["min_tokens"],
            max_length=corpus["max_length"],
            max_lines=corpus["validation_lines"] if split == "validation" else None,
            max_tokens=corpus["max_tokens"].get(split),
            seed=seed,
            split=split,
        )
        attrs = {
            "split": split,
            "corpus_fingerprint": corpus_fingerprint(lines[split]),
            "tokenizer": type(tokenizer).__name__,
            **stats,
            **provenance(corpus),
        }
        write_token_store(out, sequences, attrs)
