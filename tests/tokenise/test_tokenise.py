"""Tokenisation: short lines dropped, long ones cut, caps respected, token stores round-trip."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from secret_moe.errors import CorpusError
from secret_moe.testing import WORDS, tiny_tokenizer
from secret_moe.tokenise import corpus_fingerprint, read_token_store, tokenise_lines, write_token_store


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def sentence(n: int, offset: int = 0) -> str:
    return " ".join(WORDS[(offset + i) % len(WORDS)] for i in range(n))


LENGTHS = [3, 4, 5, 6, 10, 11, 25, 2, 5]  # words = tokens with the word-level tokenizer (no special tokens)


def test_short_lines_dropped_long_lines_cut(tokenizer):
    lines = [sentence(n, offset=i) for i, n in enumerate(LENGTHS)]
    sequences, stats = tokenise_lines(
        lines, tokenizer, min_tokens=5, max_length=10, max_lines=None, max_tokens=None, seed=0, split="train"
    )
    expected = [tokenizer(line)["input_ids"][:10] for line, n in zip(lines, LENGTHS, strict=False) if n >= 5]
    assert Counter(tuple(s.tolist()) for s in sequences) == Counter(tuple(e) for e in expected)
    assert sorted(len(s) for s in sequences) == [5, 5, 6, 10, 10, 10]
    assert all(s.dtype == np.int32 for s in sequences)
    assert stats == {"lines_in": 9, "lines_kept": 6, "lines_dropped": 3, "tokens": 46}


def test_order_is_a_seeded_shuffle(tokenizer):
    lines = [sentence(8, offset=i) for i in range(40)]
    kwargs = {"min_tokens": 1, "max_length": 50, "max_lines": None, "max_tokens": None, "split": "train"}
    first, _ = tokenise_lines(lines, tokenizer, seed=0, **kwargs)
    again, _ = tokenise_lines(lines, tokenizer, seed=0, **kwargs)
    other, _ = tokenise_lines(lines, tokenizer, seed=1, **kwargs)
    assert [s.tolist() for s in first] == [s.tolist() for s in again]
    assert [s.tolist() for s in first] != [s.tolist() for s in other]
    assert sorted(s.tolist() for s in first) == sorted(s.tolist() for s in other)


def test_line_and_token_caps(tokenizer):
    lines = [sentence(10, offset=i) for i in range(50)]
    kwargs = {"min_tokens": 1, "max_length": 50, "seed": 0, "split": "validation"}
    by_lines, stats = tokenise_lines(lines, tokenizer, max_lines=7, max_tokens=None, **kwargs)
    assert len(by_lines) == 7 and stats["lines_kept"] == 7
    by_tokens, stats = tokenise_lines(lines, tokenizer, max_lines=None, max_tokens=35, **kwargs)
    assert len(by_tokens) == 4 and stats["tokens"] == 40  # stops at the first line that reaches the cap


def test_min_tokens_that_leaves_no_line_names_min_tokens(tokenizer):
    lines = [sentence(n) for n in (3, 4, 6)]
    with pytest.raises(CorpusError, match="min_tokens=7") as error:
        tokenise_lines(
            lines, tokenizer, min_tokens=7, max_length=10, max_lines=None, max_tokens=None, seed=0, split="validation"
        )
    assert "validation" in str(error.value)


def test_token_store_round_trip(tmp_path, tokenizer):
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 40, size=n).astype(np.int32) for n in (5, 1, 17, 8, 48)]
    attrs = {"split": "train", "tokens": int(sum(len(s) for s in sequences)), "corpus_fingerprint": "abc"}
    write_token_store(tmp_path / "t.zarr", sequences, attrs)
    read, read_attrs = read_token_store(tmp_path / "t.zarr")
    assert len(read) == len(sequences)
    for got, want in zip(read, sequences, strict=False):
        assert np.array_equal(got, want)
    assert read_attrs == attrs


def test_corpus_fingerprint_depends_on_content_and_order():
    assert corpus_fingerprint(["a b", "c"]) == corpus_fingerprint(["a b", "c"])
    assert corpus_fingerprint(["a b", "c"]) != corpus_fingerprint(["c", "a b"])
    assert corpus_fingerprint(["a b", "c"]) != corpus_fingerprint(["a b", "d"])
