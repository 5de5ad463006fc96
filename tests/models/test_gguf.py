"""A GGUF file on disk is recognised by its magic bytes; anything else is refused, naming the file."""

from __future__ import annotations

import pytest

from secret_moe.errors import ModelSourceError
from secret_moe.models.gguf import check_gguf_file


def test_the_real_gguf_file_is_accepted(gemma_gguf):
    assert check_gguf_file(str(gemma_gguf), "models.gemma.path") == gemma_gguf


@pytest.mark.parametrize(
    ("content", "start"),
    [
        (b'{"architectures": ["Gemma3ForCausalLM"]}', b'{"ar'),  # a config.json given instead
        (b"\x00\x00\x00\x00GGUF", b"\x00\x00\x00\x00"),  # the magic bytes, but not at the start
        (b"GG", b"GG"),  # shorter than the magic
    ],
)
def test_a_file_that_is_not_gguf_is_refused_by_name(tmp_path, content, start):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(content)
    with pytest.raises(ModelSourceError) as error:
        check_gguf_file(fake, "models.gemma.path")
    assert str(error.value) == (
        f"models.gemma.path: file '{fake}' is not a GGUF file (it starts with {start!r}, not b'GGUF')"
    )


def test_a_missing_gguf_file_is_named(tmp_path):
    with pytest.raises(ModelSourceError, match="models.gemma.path: GGUF file '.*nowhere.gguf' does not exist"):
        check_gguf_file(tmp_path / "nowhere.gguf", "models.gemma.path")
