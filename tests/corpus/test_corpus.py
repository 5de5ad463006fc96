"""Corpus sources: local files (checked before any job), and the offline python_docs default."""

from __future__ import annotations

import json

import pytest

from secret_moe import corpus
from secret_moe.corpus import check_corpus, load_lines
from secret_moe.errors import CorpusError


def files_spec(train, validation, text_column="text"):
    return {
        "source": "files",
        "files": {
            "train": str(train) if train else None,
            "validation": str(validation) if validation else None,
            "text_column": text_column,
        },
        "validation_lines": 10,
    }


@pytest.fixture
def good(tmp_path):
    train, validation = tmp_path / "train.txt", tmp_path / "validation.txt"
    train.write_text("the  river\n\n   \nthe city of music\n")
    validation.write_text("a king\n")
    return train, validation


def test_local_text_files_are_read_and_normalised(good):
    train, validation = good
    check_corpus(files_spec(train, validation))
    lines = load_lines(files_spec(train, validation), seed=0)
    assert lines == {"train": ["the river", "the city of music"], "validation": ["a king"]}


def test_jsonl_files_use_the_text_column(tmp_path):
    for split in ("train", "validation"):
        (tmp_path / f"{split}.jsonl").write_text(
            "\n".join(json.dumps({"body": f"{split} {i}", "id": i}) for i in range(3)) + "\n"
        )
    spec = files_spec(tmp_path / "train.jsonl", tmp_path / "validation.jsonl", text_column="body")
    assert load_lines(spec, seed=0)["validation"] == ["validation 0", "validation 1", "validation 2"]
    with pytest.raises(CorpusError, match="'text'"):
        load_lines(files_spec(tmp_path / "train.jsonl", tmp_path / "validation.jsonl"), seed=0)


@pytest.mark.parametrize("split", ["train", "validation"])
@pytest.mark.parametrize("problem", ["missing", "empty"])
def test_missing_or_empty_file_is_named(good, tmp_path, split, problem):
    bad = tmp_path / f"bad_{split}.txt"
    if problem == "empty":
        bad.write_text("")
    paths = {"train": good[0], "validation": good[1], split: bad}
    spec = files_spec(paths["train"], paths["validation"])
    word = "does not exist" if problem == "missing" else "is empty"
    with pytest.raises(CorpusError, match=word) as error:
        check_corpus(spec)
    assert str(bad) in str(error.value) and f"corpus.files.{split}" in str(error.value)
    with pytest.raises(CorpusError, match=word) as error:
        load_lines(spec, seed=0)
    assert str(bad) in str(error.value)


def test_unset_file_is_named(good):
    with pytest.raises(CorpusError, match="corpus.files.validation"):
        check_corpus(files_spec(good[0], None))


def test_blank_only_file_is_refused(good, tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\n")
    with pytest.raises(CorpusError, match="no non-blank text") as error:
        load_lines(files_spec(blank, good[1]), seed=0)
    assert str(blank) in str(error.value)


def test_unsupported_suffix_is_named(good, tmp_path):
    odd = tmp_path / "train.csv"
    odd.write_text("text\nhello\n")
    for check in (check_corpus, lambda spec: load_lines(spec, seed=0)):
        with pytest.raises(CorpusError, match="unsupported suffix") as error:
            check(files_spec(odd, good[1]))
        assert str(odd) in str(error.value) and "corpus.files.train" in str(error.value)


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_a_file_that_is_not_utf8_is_named_with_the_bad_byte(good, tmp_path, suffix):
    bad = tmp_path / f"latin1{suffix}"
    text = "the river\ncaf\u00e9 music\n"  # é in Latin-1 is the lone byte 0xe9
    bad.write_bytes(
        text.encode("latin-1")
        if suffix == ".txt"
        else (json.dumps({"text": text}, ensure_ascii=False) + "\n").encode("latin-1")
    )
    offset = bad.read_bytes().index(b"\xe9")
    expected = (
        f"corpus.files.validation: file '{bad}' is not UTF-8 text "
        f"(byte 0xe9 at offset {offset}: invalid continuation byte)"
    )
    with pytest.raises(CorpusError) as error:
        check_corpus(files_spec(good[0], bad))
    assert str(error.value) == expected
    with pytest.raises(CorpusError) as error:  # the job's own read says the same, not datasets' generic error
        load_lines(files_spec(good[0], bad), seed=0)
    assert str(error.value) == expected


def test_utf8_check_reads_the_whole_file_across_blocks(good, tmp_path):
    block = corpus._BLOCK_BYTES
    ok = tmp_path / "split_char.txt"
    # a three-byte character (€) straddling the first block boundary is valid UTF-8
    ok.write_bytes(b"a" * (block - 1) + "\u20ac\n".encode() + b"b\n")
    check_corpus(files_spec(ok, good[1]))
    late = tmp_path / "late.txt"
    late.write_bytes(b"a\n" * block + b"\xff\n")  # the bad byte in the third block
    with pytest.raises(CorpusError, match=f"byte 0xff at offset {2 * block}: invalid start byte"):
        check_corpus(files_spec(late, good[1]))
    cut = tmp_path / "cut.txt"
    cut.write_bytes(b"a" * block + "\u20ac".encode()[:2])  # the file ends inside a character
    with pytest.raises(CorpusError, match=f"byte 0xe2 at offset {block}: unexpected end of data"):
        check_corpus(files_spec(cut, good[1]))


def test_parquet_is_not_checked_as_text(tmp_path):
    import pandas as pd

    for split in ("train", "validation"):
        pd.DataFrame({"text": [f"{split} line"]}).to_parquet(tmp_path / f"{split}.parquet")
    spec = files_spec(tmp_path / "train.parquet", tmp_path / "validation.parquet")
    check_corpus(spec)  # binary, not UTF-8, and accepted
    assert load_lines(spec, seed=0) == {"train": ["train line"], "validation": ["validation line"]}


def test_check_corpus_does_not_touch_other_sources():
    check_corpus({"source": "python_docs"})
    check_corpus({"source": "hub", "hub": {"path": "nowhere/nothing"}})


def test_unknown_source_is_refused():
    with pytest.raises(CorpusError, match="'nope'"):
        load_lines({"source": "nope"}, seed=0)


def test_python_docs_yields_many_paragraphs():
    spec = {"source": "python_docs", "validation_lines": 200}
    lines = load_lines(spec, seed=0)
    assert len(lines["validation"]) == 200
    assert len(lines["train"]) > 5000
    assert all(line and line == " ".join(line.split()) for line in lines["train"][:2000])
    words = sum(len(line.split()) for line in lines["train"])
    assert words > 200_000  # real prose, not a handful of headings
    assert any("dictionary" in line for line in lines["train"] + lines["validation"])
