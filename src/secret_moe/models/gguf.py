"""GGUF files on disk (llama.cpp's single-file format): recognised by their magic bytes, checked before any job."""

from __future__ import annotations

from pathlib import Path

from secret_moe.errors import ModelSourceError

GGUF_MAGIC = (
    b"GGUF"  # the first four bytes of every GGUF file (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md)
)


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
