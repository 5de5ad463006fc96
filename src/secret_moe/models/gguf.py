"""GGUF files on disk (llama.cpp's single-file format): recognised by their magic bytes, checked before any job."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

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


def gguf_shape(path: str | Path, key: str) -> SimpleNamespace:
    """The layer count and hidden size that a GGUF file's metadata records (`<arch>.block_count`,
    `<arch>.embedding_length`), read without its tensors, as a config for models.layers.num_layers / hidden_size."""
    from gguf import GGUFReader  # numpy only: the tensors are memory-mapped, never read

    file = check_gguf_file(path, key)
    try:
        fields = GGUFReader(file).fields
        arch = fields["general.architecture"].contents()
        layers, hidden = (int(fields[f"{arch}.{name}"].contents()) for name in ("block_count", "embedding_length"))
    except (KeyError, ValueError, OSError) as error:
        raise ModelSourceError(f"{key}: cannot read the layer count of GGUF file {str(path)!r} ({error!r})") from error
    return SimpleNamespace(num_hidden_layers=layers, hidden_size=hidden)
