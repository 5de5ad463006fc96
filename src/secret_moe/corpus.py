"""Raw text lines for the train and validation splits, from the Hub, local files or the offline default.

The paper used Wikitext (`Salesforce/wikitext`, `wikitext-2-raw-v1` in the authors' code), one example
per line.  Offline, the default corpus is the English documentation that ships with the Python
interpreter: the `pydoc_data.topics` help pages plus the docstrings of the standard library, split
into paragraphs.  It is real English prose about programming, a narrower domain than Wikipedia.
"""

from __future__ import annotations

import ast
import codecs
import logging
import random
import sysconfig
from pathlib import Path
from typing import Any

from secret_moe.errors import CorpusError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation")
_FILE_BUILDERS = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
_TEXT_SUFFIXES = {".txt", ".jsonl", ".json"}  # read as UTF-8 text; parquet is binary
_BLOCK_BYTES = 1 << 20
# Standard-library folders whose docstrings are tests, demos or GUI code rather than prose.
_SKIPPED_STDLIB_DIRS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "tkinter", "turtledemo"}


def _normalise(paragraph: str) -> str:
    return " ".join(paragraph.split())


def python_docs_paragraphs() -> list[str]:
    """Paragraphs of the interpreter's own documentation, in a fixed order."""
    from pydoc_data.topics import topics

    paragraphs = [p for key in sorted(topics) for p in topics[key].split("\n\n")]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for source in sorted(stdlib.rglob("*.py")):
        if _SKIPPED_STDLIB_DIRS & set(source.relative_to(stdlib).parts):
            continue
        try:
            tree = ast.parse(source.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    paragraphs.extend(doc.split("\n\n"))
    return [text for text in map(_normalise, paragraphs) if text]


def _hub_lines(spec: dict[str, Any], split: str) -> list[str]:
    import datasets

    try:
        data = datasets.load_dataset(spec["path"], spec.get("name"), revision=spec.get("revision"), split=split)
    except Exception as error:  # the Hub raises many types; all mean "could not fetch"
        raise CorpusError(
            f"could not fetch the corpus {spec['path']!r} ({spec.get('name')}, split {split!r}) "
            f"from the Hugging Face Hub: {error}. Offline, set corpus.source to 'python_docs' "
            "(the default) or to 'files' with local text/JSONL/Parquet files."
        ) from error
    return [_normalise(text) for text in data[spec.get("text_column", "text")] if text.strip()]


def _require_file(path: str, key: str) -> Path:
    """The corpus file at `path`, or an error naming the config key, the file and what is wrong with it."""
    file = Path(path)
    if not file.is_file():
        raise CorpusError(f"{key}: file {path!r} does not exist")
    if file.stat().st_size == 0:
        raise CorpusError(f"{key}: file {path!r} is empty")
    if file.suffix not in _FILE_BUILDERS:
        raise CorpusError(f"{key}: file {path!r} has an unsupported suffix, use one of {sorted(_FILE_BUILDERS)}")
    if file.suffix in _TEXT_SUFFIXES:
        _require_utf8(file, key)
    return file


def _require_utf8(file: Path, key: str) -> None:
    """Decode the whole file in blocks (about a second per GB), so a bad byte is reported by its offset here
    rather than as the `datasets` loader's "An error occurred while generating the dataset"."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    start = 0  # offset in the file of the first byte the decoder has not yet consumed
    with file.open("rb") as stream:
        while True:
            block = stream.read(_BLOCK_BYTES)
            pending = decoder.getstate()[0]  # bytes of a character split across blocks
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as error:
                offset = start - len(pending) + error.start
                raise CorpusError(
                    f"{key}: file {str(file)!r} is not UTF-8 text "
                    f"(byte 0x{error.object[error.start]:02x} at offset {offset}: {error.reason})"
                ) from error
            if not block:
                return
            start += len(block)


def _file_lines(path: str, text_column: str, split: str) -> list[str]:
    import datasets

    file = _require_file(path, f"corpus.files.{split}")
    builder = _FILE_BUILDERS[file.suffix]
    data = datasets.load_dataset(builder, data_files=str(file), split="train")
    column = "text" if builder == "text" else text_column
    if column not in data.column_names:
        raise CorpusError(f"corpus file {path!r} has no column {column!r} (has {data.column_names})")
    lines = [_normalise(text) for text in data[column] if text and text.strip()]
    if not lines:
        raise CorpusError(f"corpus file {path!r} holds no non-blank text")
    return lines


def check_corpus(spec: dict[str, Any]) -> None:
    """Cheap checks that run before any job: local files exist, are not empty, have a known suffix and
    (text formats) are UTF-8."""
    if spec["source"] != "files":
        return
    for split in SPLITS:
        path = spec["files"].get(split)
        if not path:
            raise CorpusError(f"corpus.files.{split} is not set")
        _require_file(path, f"corpus.files.{split}")


def load_lines(spec: dict[str, Any], seed: int) -> dict[str, list[str]]:
    """Lines per split. Sources without a validation split hold out `validation_lines` at random."""
    source = spec["source"]
    if source == "hub":
        return {split: _hub_lines(spec["hub"], split) for split in SPLITS}
    if source == "files":
        column = spec["files"].get("text_column", "text")
        return {split: _file_lines(spec["files"][split], column, split) for split in SPLITS}
    if source == "python_docs":
        lines = python_docs_paragraphs()
        random.Random(seed).shuffle(lines)
        held_out = spec["validation_lines"]
        return {"validation": lines[:held_out], "train": lines[held_out:]}
    raise CorpusError(f"corpus.source: unknown source {source!r}")
