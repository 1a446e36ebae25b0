"""The GGUF reader: a missing file, another format, an unreadable version and a file cut
short or damaged anywhere are each one ConversionError naming the path, from every
reader of GGUF (weights, tokenizer, chat template); one open file serves them all."""
import numpy as np
import pytest
from gguf import GGUFReader

from kerasllm.convert.errors import ConversionError
from kerasllm.convert.gguf_file import GgufFile
from kerasllm.convert.gguf_llama import load_gguf_llama
from kerasllm.convert.gguf_tokenizer import byte_bpe_from_gguf, chat_template
from tests.convert.gpt_tiny_gguf import write_tiny_gguf

READERS = {"weights": load_gguf_llama, "tokenizer": byte_bpe_from_gguf,
           "chat_template": chat_template}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def cut_points(path):
    """Lengths that end a copy of the file inside its header, metadata, tensor
    descriptions and tensor data."""
    reader = GGUFReader(path)
    data_end = max(t.data_offset + t.n_bytes for t in reader.tensors)
    return [*range(0, reader.data_offset + 40, 7), reader.data_offset + 1000, data_end - 1]


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_a_file_cut_short_is_not_a_complete_gguf_file(tiny, tmp_path, reader):
    with open(tiny, "rb") as f:
        content = f.read()
    cut = tmp_path / "cut.gguf"
    for length in cut_points(tiny):
        cut.write_bytes(content[:length])
        expected = "is not a GGUF file" if length < 4 else "is not a complete GGUF file"
        with pytest.raises(ConversionError, match=expected) as raised:
            reader(cut)
        message = str(raised.value)
        assert str(cut) in message and "\n" not in message, (length, message)
        assert "reshape" not in message and "out of bounds" not in message, (length, message)


def test_garbage_after_a_gguf_header_is_not_a_complete_gguf_file(tiny, tmp_path):
    with open(tiny, "rb") as f:
        header = f.read(8)
    garbage = tmp_path / "garbage.gguf"
    for seed in range(5):
        noise = np.random.default_rng(seed).integers(0, 256, 4000, dtype=np.uint8).tobytes()
        garbage.write_bytes(header + noise)
        with pytest.raises(ConversionError, match=r"garbage\.gguf is not a complete GGUF file "
                                                  r"\(4,008 bytes\)"):
            GgufFile(garbage)


def test_missing_other_format_and_unknown_version(tiny, tmp_path):
    with pytest.raises(ConversionError, match="does not exist"):
        GgufFile(tmp_path / "missing.gguf")
    text = tmp_path / "model.gguf"
    text.write_text("not a model")
    with pytest.raises(ConversionError, match=r"is not a GGUF file: it starts with b'not "):
        GgufFile(text)
    with open(tiny, "rb") as f:
        content = f.read()
    future = tmp_path / "future.gguf"
    future.write_bytes(content[:4] + (99).to_bytes(4, "little") + content[8:])
    with pytest.raises(ConversionError, match="is GGUF version 99; versions 2, 3 can be read"):
        GgufFile(future)


def test_one_open_file_serves_every_reader(tiny):
    gguf = GgufFile(tiny)
    assert GgufFile.of(gguf) is gguf
    model, _ = load_gguf_llama(gguf)
    assert gguf.scalar("llama.block_count") == model.backbone.config.num_layers
    assert chat_template(gguf) is None
    # The tiny file has weights but no tokenizer: named, not a KeyError.
    with pytest.raises(ConversionError, match=r"tiny\.gguf has no tokenizer\.ggml\.model"):
        byte_bpe_from_gguf(gguf)
