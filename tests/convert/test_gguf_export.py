"""save_to_gguf: a GPT written as GGUF reads back through kerasllm's importer (F32
bit-exact, F16 and Q8_0 as the gguf package rounds them), and llama.cpp itself
(llama-cpp-python) loads it and computes the same logits and greedy continuations;
what cannot be written is one named error and leaves nothing behind."""
import os

import keras
import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize

import kerasllm
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.gguf_export import rope_permutation, save_to_gguf
from kerasllm.convert.gguf_file import GgufFile
from kerasllm.convert.gguf_llama import undo_rope_permutation
from kerasllm.models import registry
from kerasllm.models.gpt.backbone import GptDecoder
from kerasllm.models.gpt.causal_lm import GptCausalLM
from kerasllm.tokenizers import train_sentencepiece
from tests.convert.test_hf_export import byte_bpe, gpt2_model, llama_model
from tests.models import text_tasks

WORDS = text_tasks.WORDS
# Each word is followed by one word only, so a model trained on these lines predicts
# with wide margins: greedy decoding has no near-ties that float error could flip.
CYCLE = tuple(" ".join((WORDS[i:] + WORDS[:i]) * 2) for i in range(len(WORDS)))
PROMPTS = ["the king", "far away lived", "castle with their", "dog", "queen of a land far"]


def test_rope_permutation_is_undone_by_the_importer():
    weight = np.arange(6 * 8 * 5, dtype=np.float32).reshape(6 * 8, 5)
    permuted = rope_permutation(weight, 6)
    assert not np.array_equal(permuted, weight)
    np.testing.assert_array_equal(undo_rope_permutation(permuted, 6), weight)
    # Head 0's rows 0..7 ((p, p + 4) pairs) become adjacent pairs (2p, 2p + 1).
    np.testing.assert_array_equal(permuted[:8, 0], weight[[0, 4, 1, 5, 2, 6, 3, 7], 0])


def assert_same_weights(model, loaded):
    assert loaded.backbone.config == model.backbone.config.replace(
        dropout=0.0, attention_dropout=0.0, initializer_range=0.02)
    for mine, theirs in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_a_llama_with_sentencepiece_reads_back_exactly(tmp_path):
    model = llama_model()
    loaded = GptCausalLM.from_preset(save_to_gguf(model, tmp_path / "tiny.gguf"))
    assert_same_weights(model, loaded)
    texts = ["the king  and\tqueen 1234", "naïve ✓", ""]
    assert (loaded.tokenizer.tokenize(texts).to_list()
            == model.tokenizer.tokenize(texts).to_list())
    assert loaded.tokenizer.special_ids() == model.tokenizer.special_ids()
    assert loaded.chat_template == model.chat_template


def test_a_llama_with_byte_bpe_reads_back_exactly(tmp_path):
    tokenizer = byte_bpe(bos=True)
    config = registry.get("llama_tiny").replace(vocab_size=tokenizer.vocab_size,
                                                max_sequence_length=64)
    kerasllm.set_random_seed(5)
    model = GptCausalLM(GptDecoder(config), tokenizer=tokenizer).build_for_inputs()
    loaded = GptCausalLM.from_preset(save_to_gguf(model, tmp_path / "tiny.gguf"))
    assert_same_weights(model, loaded)
    assert loaded.tokenizer.settings() == tokenizer.settings()
    # ChatML's tokens without a template: the ChatML template goes into the file.
    assert "<|im_start|>" in loaded.chat_template


def test_a_gpt2_style_model_reads_back_exactly(tmp_path):
    model = gpt2_model(byte_bpe())
    path = save_to_gguf(model, tmp_path / "gpt2.gguf")
    assert GgufFile(path).scalar("general.architecture") == "gpt2"
    loaded = GptCausalLM.from_preset(path)
    assert_same_weights(model, loaded)
    assert loaded.tokenizer.settings() == model.tokenizer.settings()


@pytest.mark.parametrize("dtype,ggml_type", [("f16", GGMLQuantizationType.F16),
                                             ("q8_0", GGMLQuantizationType.Q8_0)])
def test_f16_and_q8_0_round_as_the_gguf_package_does(tmp_path, dtype, ggml_type):
    model = text_tasks.gpt("llama_tiny")
    path = save_to_gguf(model, tmp_path / "tiny.gguf", dtype=dtype)
    types = {t.name: t.tensor_type for t in GgufFile(path).tensors}
    assert types["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32
    assert types["blk.0.ffn_down.weight"] == ggml_type
    loaded = GptCausalLM.from_preset(path)
    mine = model.backbone.blocks[0].feed_forward.down_dense.kernel.numpy().T
    expected = dequantize(quantize(mine, ggml_type), ggml_type)
    np.testing.assert_array_equal(
        loaded.backbone.blocks[0].feed_forward.down_dense.kernel.numpy().T, expected)
    assert np.abs(expected - mine).max() <= np.abs(mine).max() / (127 if dtype == "q8_0"
                                                                  else 1000)


def test_what_cannot_be_written_is_named_and_nothing_is_left(tmp_path):
    model = llama_model()
    with pytest.raises(ConversionError, match="dtype 'q4_0' is not one kerasllm writes to "
                                              "GGUF; choose f32, f16, q8_0"):
        save_to_gguf(model, tmp_path / "x.gguf", dtype="q4_0")
    with pytest.raises(ConversionError, match="a BertClassifier cannot be written as GGUF"):
        save_to_gguf(text_tasks.classifier(), tmp_path / "x.gguf")
    (tmp_path / "x.gguf").write_bytes(b"mine")
    with pytest.raises(ConversionError, match="x.gguf exists; pass overwrite"):
        save_to_gguf(model, tmp_path / "x.gguf")
    model.enable_lora(2)
    with pytest.raises(ConversionError, match="unmerged LoRA adapters"):
        save_to_gguf(model, tmp_path / "y.gguf")
    assert os.listdir(tmp_path) == ["x.gguf"]
    assert (tmp_path / "x.gguf").read_bytes() == b"mine"


# --- llama.cpp, the consumer -------------------------------------------------------------

try:
    import llama_cpp
except ImportError:  # the llama_cpp extra (README's test command installs it)
    llama_cpp = None
needs_llama_cpp = pytest.mark.skipif(llama_cpp is None,
                                     reason="pip install -e '.[llama-cpp]'")


def trained_on_cycle(style, tokenizer):
    """A tiny model of `style` ("llama_tiny" or "gpt_tiny") fitted on CYCLE."""
    kerasllm.set_random_seed(0)
    config = registry.get(style).replace(vocab_size=tokenizer.vocab_size,
                                         max_sequence_length=64)
    model = GptCausalLM(GptDecoder(config), tokenizer=tokenizer, sequence_length=32)
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(list(CYCLE) * 8, batch_size=16, epochs=3, verbose=0)
    return model


class LlamaCpp:
    """A GGUF file loaded by llama.cpp: logits of a token sequence and greedy
    continuations, computed step by step from its own logits (no sampler)."""

    def __init__(self, path, n_ctx=64):
        # A float32 KV cache (llama.cpp's default is float16): the comparison is of
        # the same computation, not of a cache's rounding (about 1e-2 in SmolLM2's logits).
        self.llm = llama_cpp.Llama(os.fspath(path), n_ctx=n_ctx, logits_all=True,
                                   verbose=False, n_threads=2, seed=0,
                                   type_k=llama_cpp.GGML_TYPE_F32,
                                   type_v=llama_cpp.GGML_TYPE_F32)

    def logits(self, ids):
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[:len(ids)])

    def greedy(self, ids, max_new_tokens, eos_id):
        self.llm.reset()
        self.llm.eval(ids)
        new = []
        while len(new) < max_new_tokens:
            token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
            new.append(token)
            if token == eos_id:
                break
            self.llm.eval([token])
        return new

    def close(self):
        self.llm.close()


def prompt_ids(tokenizer, prompt):
    bos = [tokenizer.bos_id] if tokenizer.bos_id is not None else []
    return bos + tokenizer.tokenize([prompt]).to_list()[0]


def assert_llama_cpp_agrees(model, path, prompts, max_new_tokens, atol):
    """llama.cpp's logits of each prompt within `atol` of ours, and its greedy
    continuation equal to ours token for token."""
    tokenizer = model.tokenizer
    reference = LlamaCpp(path)
    try:
        for prompt in prompts:
            ids = prompt_ids(tokenizer, prompt)
            x = np.array([ids], np.int32)
            ours = model({"token_ids": x, "padding_mask": np.ones_like(x)})["logits"][0]
            np.testing.assert_allclose(reference.logits(ids), ours, atol=atol, rtol=0)
            details = model.generate(prompt, max_new_tokens=max_new_tokens,
                                     return_details=True, jit_compile=False)
            generated = list(details["token_ids"][:details["num_tokens"]])
            assert reference.greedy(ids, max_new_tokens, tokenizer.eos_id) == generated, prompt
    finally:
        reference.close()


@pytest.fixture(scope="module")
def sentencepiece_bpe():
    return train_sentencepiece(list(CYCLE) * 4, vocab_size=300, model_type="bpe")


@needs_llama_cpp
@pytest.mark.parametrize("style", ["llama_tiny", "gpt_tiny"])
def test_llama_cpp_runs_a_trained_model_as_kerasllm_does(tmp_path, sentencepiece_bpe, style):
    model = trained_on_cycle(style, sentencepiece_bpe)
    path = save_to_gguf(model, tmp_path / f"{style}.gguf")
    assert_llama_cpp_agrees(model, path, PROMPTS, max_new_tokens=12, atol=1e-3)
    reference = LlamaCpp(path)
    try:  # a SentencePiece BPE model: llama.cpp's tokenizer gives our ids
        for prompt in PROMPTS + ["  two  spaces\nand 42"]:
            assert reference.llm.tokenize(prompt.encode(), add_bos=True, special=False) \
                == prompt_ids(sentencepiece_bpe, prompt)
    finally:
        reference.close()


@needs_llama_cpp
def test_llama_cpp_runs_a_q8_0_file_close_to_float(tmp_path, sentencepiece_bpe):
    model = trained_on_cycle("llama_tiny", sentencepiece_bpe)
    path = save_to_gguf(model, tmp_path / "q8.gguf", dtype="q8_0")
    assert_llama_cpp_agrees(model, path, PROMPTS[:2], max_new_tokens=8, atol=0.15)


@needs_llama_cpp
@pytest.mark.slow
def test_llama_cpp_runs_smollm2_re_exported_as_kerasllm_does(tmp_path):
    model = GptCausalLM.from_preset("smollm2")
    path = save_to_gguf(model, tmp_path / "smollm2.gguf")
    prompts = ["The capital of France is", "def fibonacci(n):", "Once upon a time",
               "1, 2, 3, 4,", "The three primary colors are"]
    assert_llama_cpp_agrees(model, path, prompts, max_new_tokens=16, atol=1e-3)
    reference = LlamaCpp(path)
    try:  # byte-level BPE: llama.cpp's tokenizer gives our ids
        for prompt in prompts:
            assert reference.llm.tokenize(prompt.encode(), add_bos=False, special=False) \
                == prompt_ids(model.tokenizer, prompt)
    finally:
        reference.close()
