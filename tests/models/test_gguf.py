"""A GGUF file on disk is recognised by its magic bytes; anything else is refused, naming the file."""

from __future__ import annotations

import pytest

from secret_moe.errors import ModelSourceError
from secret_moe.models.gguf import check_gguf_file, gguf_shape


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


def write_gguf_with_arrays(path, layers: int, hidden: int):
    """A GGUF file whose shape keys come after arrays of every kind (strings, numbers, nested), as a reader that
    skips values must get past them."""
    from gguf import GGUFValueType, GGUFWriter

    writer = GGUFWriter(str(path), "llama")
    writer.add_token_list([f"token{i}" for i in range(1000)] + ["é", ""])
    writer.add_token_scores([0.5] * 1002)
    writer.add_array("test.nested", [[1, 2], [3]])
    writer.add_key_value("test.flag", True, GGUFValueType.BOOL)
    writer.add_string("test.text", "a string")
    writer.add_block_count(layers)
    writer.add_embedding_length(hidden)
    writer.add_uint64("test.after", 7)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_the_shape_read_as_a_stream_is_the_one_gguf_reader_reads(tmp_path):
    from gguf import GGUFReader

    gguf = write_gguf_with_arrays(tmp_path / "model.gguf", layers=7, hidden=24)
    fields = GGUFReader(gguf).fields
    assert (fields["llama.block_count"].contents(), fields["llama.embedding_length"].contents()) == (7, 24)
    shape = gguf_shape(gguf, "MODEL")
    assert (shape.num_hidden_layers, shape.hidden_size) == (7, 24)


def test_the_real_gguf_file_has_gemma_3_270m_shape(gemma_gguf):
    shape = gguf_shape(gemma_gguf, "models.gemma.path")
    assert (shape.num_hidden_layers, shape.hidden_size) == (18, 640)


def test_a_gguf_file_cut_short_or_without_the_keys_is_refused_by_name(tmp_path):
    gguf = write_gguf_with_arrays(tmp_path / "model.gguf", layers=7, hidden=24)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf.read_bytes()[:2000])  # inside the token list
    with pytest.raises(ModelSourceError, match=r"MODEL: cannot read the layer count of GGUF file '.*cut.gguf' \("):
        gguf_shape(cut, "MODEL")
    bare = tmp_path / "bare.gguf"
    bare.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + bytes(16))  # no tensor, no key
    with pytest.raises(ModelSourceError, match=r"'.*bare.gguf' \(KeyError\('general.architecture'\)\)"):
        gguf_shape(bare, "MODEL")
