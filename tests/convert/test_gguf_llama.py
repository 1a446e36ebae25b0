import dataclasses
import json

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader

from kerasllm.convert import ConversionError
from kerasllm.convert.gguf_file import SUPPORTED_TYPES
from kerasllm.convert.gguf_llama import load_gguf_llama, undo_rope_permutation
from kerasllm.convert.hf_gpt import load_hf_gpt
from kerasllm.convert.smollm2 import smollm2_gguf_path
from kerasllm.models import registry
from tests.convert.gpt_tiny_checkpoint import (TINY_LLAMA_CONFIG, llama_tensors,
                                               write_gpt_checkpoint)
from tests.convert.gpt_tiny_gguf import adjacent_pair_rows, write_tiny_gguf
from tests.convert.numpy_gpt import NumpyLlama

TINY_IDS = [3, 17, 5, 9, 28, 1, 33, 12, 7, 0, 21, 14, 49]


def _logits(model, sequence):
    ids = np.asarray([sequence], np.int32)
    return model({"token_ids": ids, "padding_mask": np.ones_like(ids)})["logits"].numpy()[0]


# --- the row reordering -------------------------------------------------------------------

def test_undo_rope_permutation_inverts_llama_cpp_row_order():
    weight = np.arange(3 * 8 * 2, dtype=np.float32).reshape(3 * 8, 2)  # 3 heads of size 8
    permuted = adjacent_pair_rows(weight, 3)
    # Head 0: Hugging Face rows (0, 4), (1, 5), (2, 6), (3, 7) become adjacent.
    assert permuted[:8, 0].tolist() == [0, 8, 2, 10, 4, 12, 6, 14]
    np.testing.assert_array_equal(undo_rope_permutation(permuted, 3), weight)


# --- tiny fabricated GGUF files -------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    """The Hugging Face model whose weights the tiny GGUF files hold."""
    directory = write_gpt_checkpoint(tmp_path_factory.mktemp("hf_llama"), TINY_LLAMA_CONFIG,
                                     llama_tensors())
    return load_hf_gpt(directory)


@pytest.mark.parametrize("qtype", SUPPORTED_TYPES, ids=lambda t: t.name)
def test_tiny_gguf_matches_numpy_reference(tmp_path, tiny_hf, qtype):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", qtype=qtype)
    model, report = load_gguf_llama(path)
    assert sorted(report.assigned) == sorted(v.path for v in model.weights)
    assert set(report.assigned.values()) == {t.name for t in GGUFReader(path).tensors}
    assert report.config == tiny_hf[1].config
    ours = _logits(model, TINY_IDS)
    # The reference runs the file's own rows with llama.cpp's adjacent-pair rotation.
    max_diff = np.abs(ours - NumpyLlama.from_gguf(path)(TINY_IDS)).max()
    print(f"{qtype.name}: max |keras - numpy| logit difference {max_diff:.2e}")
    assert max_diff <= 1e-4
    if qtype == GGMLQuantizationType.F32:
        # Un-permuted, the file's weights are exactly the Hugging Face checkpoint's.
        for ours_weight, hf_weight in zip(model.weights, tiny_hf[0].weights):
            np.testing.assert_array_equal(ours_weight.numpy(), hf_weight.numpy())


def test_tied_gguf_has_no_output_weight(tmp_path):
    config = {**TINY_LLAMA_CONFIG, "tie_word_embeddings": True}
    path = write_tiny_gguf(tmp_path / "tied.gguf", config=config,
                           hf_tensors=llama_tensors(config, seed=3))
    model, report = load_gguf_llama(path)
    assert report.config.tie_embeddings and model.lm_head is None
    max_diff = np.abs(_logits(model, TINY_IDS) - NumpyLlama.from_gguf(path)(TINY_IDS)).max()
    assert max_diff <= 1e-4


@pytest.mark.parametrize("options,message", [
    ({"architecture": "gpt2"}, r"holds a 'gpt2' model; only the 'llama' architecture"),
    ({"drop_keys": ("llama.feed_forward_length", "llama.context_length")},
     r"lacks the metadata keys llama\.feed_forward_length, llama\.context_length"),
    ({"extra_metadata": {"llama.rope.scaling.type": ("linear", "string")}},
     r"rope scaling 'linear' is not supported"),
    ({"extra_metadata": {"llama.rope.dimension_count": (8, "uint32")}},
     r"rope\.dimension_count is 8, not the head size 16"),
    ({"extra_metadata": {"llama.attention.head_count_kv": (3, "uint32")}},
     r"do not divide evenly"),
    ({"extra_tensors": {"blk.9.ffn_norm.weight": np.arange(4, dtype=np.int32)}},
     r"unsupported types: blk\.9\.ffn_norm\.weight \(I32\); supported: F32, F16"),
    ({"drop_tensors": ("blk.1.ffn_up.weight",)},
     r"does not match its metadata: missing tensors: blk\.1\.ffn_up\.weight"),
    ({"extra_tensors": {"blk.0.attn_q.bias": np.zeros(64, np.float32)}},
     r"unexpected tensors \(not part of a Llama causal LM\): blk\.0\.attn_q\.bias"),
    ({"extra_tensors": {"rope_freqs.weight": np.ones(8, np.float32)}}, r"rope_freqs\.weight"),
    ({"drop_tensors": ("token_embd.weight",)}, r"has no token_embd\.weight"),
], ids=["architecture", "missing_keys", "rope_scaling", "partial_rotary", "kv_heads",
        "unsupported_type", "missing_tensor", "unexpected_tensor", "rope_freqs",
        "no_embedding"])
def test_named_errors(tmp_path, options, message):
    path = write_tiny_gguf(tmp_path / "bad.gguf", **options)
    with pytest.raises(ConversionError, match=message):
        load_gguf_llama(path)


def test_wrong_shape_names_the_tensor(tmp_path):
    # 4 key/value heads' rows where the metadata says 2.
    hf_tensors = llama_tensors()
    hf_tensors["model.layers.0.self_attn.k_proj.weight"] = np.zeros((64, 64), np.float32)
    path = write_tiny_gguf(tmp_path / "bad.gguf", hf_tensors=hf_tensors)
    with pytest.raises(ConversionError, match=r"shape disagrees with the metadata: "
                                              r"blk\.0\.attn_k\.weight \(64, 64\) \(the metadata "
                                              r"implies \(32, 64\)\)"):
        load_gguf_llama(path)


# --- SmolLM2-135M-Instruct (Q4_1 / Q8_0 / F32, 30 layers) ----------------------------------

@pytest.fixture(scope="module")
def smollm2():
    """(model, report, the NumPy reference on the file's own dequantised tensors,
    {token string: id} of the file's vocabulary)."""
    path = smollm2_gguf_path()
    model, report = load_gguf_llama(path)
    vocabulary = GGUFReader(path).fields["tokenizer.ggml.tokens"].contents()
    return model, report, NumpyLlama.from_gguf(path), {t: i for i, t in enumerate(vocabulary)}


@pytest.fixture(scope="module")
def smollm2_sequence(smollm2):
    """"The capital of France is", spelled with the vocabulary's whole-word tokens
    (byte-level BPE marks a leading space as "Ġ"), and its reference logits."""
    words = ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]
    ids = [smollm2[3][word] for word in words]
    return ids, smollm2[2](ids)


def test_smollm2_config_and_weights(smollm2):
    model, report, _, _ = smollm2
    expected = registry.get("smollm2_135m")
    differences = {field.name: (getattr(report.config, field.name),
                                getattr(expected, field.name))
                   for field in dataclasses.fields(expected)
                   if getattr(report.config, field.name) != getattr(expected, field.name)}
    print(f"GGUF config vs registry smollm2_135m, differences: {differences}")
    assert differences == {}
    json.dumps(report.config.to_dict())  # plain Python numbers, not NumPy scalars
    assert len(report.assigned) == len(model.weights) == 272
    assert sorted(report.assigned) == sorted(v.path for v in model.weights)
    assert report.skipped_tensors == {} and report.unassigned_weights == {}
    assert report.tokenizer["tokens"] == 49152 and report.tokenizer["pre"] == "smollm"


def test_smollm2_logits_match_numpy_reference(smollm2, smollm2_sequence):
    model, _, _, vocabulary = smollm2
    ids, expected = smollm2_sequence
    ours = _logits(model, ids)
    max_diff = np.abs(ours - expected).max()
    print(f"SmolLM2: max |keras - numpy| logit difference {max_diff:.2e} "
          f"(logits up to {np.abs(expected).max():.1f})")
    assert max_diff <= 1e-3
    assert ours[-1].argmax() == expected[-1].argmax() == vocabulary["ĠParis"]


def test_smollm2_parity_needs_the_rope_row_reordering(smollm2, smollm2_sequence):
    """With the file's query/key rows as stored (adjacent-pair order) our
    rotate-half attention pairs the wrong features: parity breaks."""
    model, report, reference, _ = smollm2
    ids, expected = smollm2_sequence
    variables = {v.path: v for v in model.weights}
    rotated = {path: name for path, name in report.assigned.items()
               if name.endswith(("attn_q.weight", "attn_k.weight"))}
    assert len(rotated) == 60
    saved = {path: variables[path].numpy() for path in rotated}
    try:
        for path, name in rotated.items():
            stored = reference.tensors[name]  # [out, in], as in the file
            variables[path].assign(stored.T.reshape(variables[path].shape))
        max_diff = np.abs(_logits(model, ids) - expected).max()
    finally:
        for path, value in saved.items():
            variables[path].assign(value)
    print(f"SmolLM2 without un-permuting Q/K: max logit difference {max_diff:.2f}")
    assert max_diff > 0.5
    np.testing.assert_allclose(_logits(model, ids), expected, atol=1e-3)  # restored


@pytest.mark.slow
def test_smollm2_answers_the_capital_of_france(smollm2):
    """End to end with the byte-level BPE tokenizer from the same file and the
    cached greedy decoding loop; the NumPy reference, fed the prompt and the
    answer, picks the same tokens."""
    import tensorflow as tf

    from kerasllm.generation import generate, left_pad
    from kerasllm.convert.gguf_tokenizer import byte_bpe_from_gguf

    model, _, reference, vocabulary = smollm2
    tokenizer = byte_bpe_from_gguf(smollm2_gguf_path())
    prompt = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
              "Hugging Face<|im_end|>\n<|im_start|>user\nWhat is the capital of France?"
              "<|im_end|>\n<|im_start|>assistant\n")  # the file's chat template
    prompt_ids = tokenizer.tokenize([prompt])
    end = vocabulary["<|im_end|>"]
    generated = generate(model.generation_step, model.init_cache, left_pad(prompt_ids), 24,
                         stop_token_ids=[end])
    answer = generated.token_ids[0, :int(generated.lengths[0])].numpy().tolist()
    text = tokenizer.detokenize(tf.constant([answer[:-1]])).numpy()[0].decode()
    print(f"SmolLM2 answers {text!r}")
    assert answer[-1] == end and "Paris" in text
    sequence = prompt_ids.to_list()[0] + answer
    expected = reference(sequence[:-1]).argmax(axis=-1)[-len(answer):]
    assert expected.tolist() == answer
