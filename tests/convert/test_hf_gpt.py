import os

import numpy as np
import pytest

from kerasllm.convert import ConversionError
from kerasllm.convert.hf_gpt import gpt_config_from_hf, load_hf_gpt
from kerasllm.models.gpt.config import GptConfig
from tests.convert.gpt_tiny_checkpoint import (TINY_GPT2_CONFIG, TINY_LLAMA_CONFIG,
                                               gpt2_tensors, llama_tensors,
                                               write_gpt_checkpoint)
from tests.convert.numpy_gpt import NumpyGpt2, NumpyLlama

# Sequences of different lengths, run as one padded batch.
SEQUENCES = [[3, 17, 5, 9, 28, 1, 33, 12, 7, 0, 21, 14], [8, 8, 2, 39, 11], [30]]


def _batch(sequences, left):
    """(token_ids, padding_mask) [batch, longest], padded on the left or right."""
    width = max(map(len, sequences))
    ids = np.zeros((len(sequences), width), np.int32)
    mask = np.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        span = slice(width - len(sequence), width) if left else slice(0, len(sequence))
        ids[row, span], mask[row, span] = sequence, 1
    return ids, mask


def _max_diff(model, reference, sequences=SEQUENCES):
    """Max |logit difference| over the real tokens of right- and left-padded batches."""
    references = [reference(sequence) for sequence in sequences]
    worst = 0.0
    for left in (False, True):
        ids, mask = _batch(sequences, left)
        logits = model({"token_ids": ids, "padding_mask": mask})["logits"].numpy()
        for row, row_mask, expected in zip(logits, mask, references):
            worst = max(worst, np.abs(row[row_mask == 1] - expected).max())
    return worst


CASES = {
    # name: (config, tensors, reference class)
    "gpt2_tied_with_buffers": (TINY_GPT2_CONFIG, gpt2_tensors(), NumpyGpt2),
    "gpt2_untied_no_prefix": (
        {**TINY_GPT2_CONFIG, "tie_word_embeddings": False, "n_inner": 24},
        gpt2_tensors({**TINY_GPT2_CONFIG, "tie_word_embeddings": False, "n_inner": 24},
                     seed=1, prefix="", buffers=False), NumpyGpt2),
    "llama_gqa_untied": (TINY_LLAMA_CONFIG, llama_tensors(), NumpyLlama.from_hf_directory),
    "llama_tied_with_buffers": (
        {**TINY_LLAMA_CONFIG, "tie_word_embeddings": True, "num_key_value_heads": 1},
        llama_tensors({**TINY_LLAMA_CONFIG, "tie_word_embeddings": True,
                       "num_key_value_heads": 1}, seed=2, buffers=True),
        NumpyLlama.from_hf_directory),
}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """{case: (directory, model, report)}."""
    out = {}
    for name, (config, tensors, _) in CASES.items():
        directory = write_gpt_checkpoint(tmp_path_factory.mktemp(name), config, tensors)
        out[name] = (directory, *load_hf_gpt(directory))
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_numpy_reference(converted, case):
    directory, model, _ = converted[case]
    reference = CASES[case][2](directory)
    max_diff = _max_diff(model, reference)
    print(f"{case}: max |keras - numpy| logit difference {max_diff:.2e}")
    assert max_diff <= 1e-4


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_weight_is_assigned_and_every_tensor_used(converted, case):
    _, model, report = converted[case]
    config, tensors, _ = CASES[case]
    assert sorted(report.assigned) == sorted(v.path for v in model.weights)
    assert report.unassigned_weights == {}
    used = set(report.assigned.values()) | set(report.skipped_tensors)
    fused = {name.split("[")[0] for name in used}  # c_attn thirds name their tensor
    assert fused == set(tensors)
    assert report.config.tie_embeddings == (model.lm_head is None)


def test_reports_buffers_and_fused_thirds(converted):
    _, _, report = converted["gpt2_tied_with_buffers"]
    assert sorted(report.skipped_tensors) == [
        f"transformer.h.{i}.attn.{name}" for i in range(2) for name in ("bias", "masked_bias")]
    query = next(name for path, name in report.assigned.items()
                 if path.endswith("block_0/self_attention/query/kernel"))
    assert query == "transformer.h.0.attn.c_attn.weight[:, 0:16]"
    _, _, report = converted["llama_tied_with_buffers"]
    assert sorted(report.skipped_tensors) == [
        f"model.layers.{i}.self_attn.rotary_emb.inv_freq" for i in range(2)]


def test_tied_head_copy_is_skipped(tmp_path):
    tensors = gpt2_tensors(buffers=False)
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].copy()
    model, report = load_hf_gpt(_write(tmp_path, TINY_GPT2_CONFIG, tensors))
    assert model.lm_head is None
    assert report.skipped_tensors == {
        "lm_head.weight": "tied output projection, a copy of wte.weight"}


def test_configs():
    gpt2 = gpt_config_from_hf(TINY_GPT2_CONFIG)
    assert gpt2 == GptConfig(num_layers=2, hidden_size=16, num_heads=4, intermediate_size=64,
                             vocab_size=40, max_sequence_length=24, norm_epsilon=1e-5)
    llama = gpt_config_from_hf(TINY_LLAMA_CONFIG)
    assert llama == GptConfig(
        num_layers=2, hidden_size=64, num_heads=4, num_key_value_heads=2,
        intermediate_size=96, vocab_size=50, max_sequence_length=64,
        position_embedding="rotary", rope_theta=500.0, norm="rms_norm", norm_epsilon=1e-5,
        feed_forward="swiglu", use_bias=False, tie_embeddings=False, dropout=0.0,
        attention_dropout=0.0)
    # Newer configs state rope_theta in rope_parameters; unstated keys take
    # LlamaConfig's defaults (untied, 1e-6, one key/value head per query head).
    newer = {key: value for key, value in TINY_LLAMA_CONFIG.items()
             if key not in ("rope_theta", "tie_word_embeddings", "rms_norm_eps",
                            "num_key_value_heads")}
    newer["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6}
    assert gpt_config_from_hf(newer) == llama.replace(
        rope_theta=1e6, norm_epsilon=1e-6, num_key_value_heads=4)


# --- named errors ----------------------------------------------------------------------

def _write(tmp_path, config, tensors):
    return write_gpt_checkpoint(tmp_path / "checkpoint", config, tensors)


@pytest.mark.parametrize("config,tensors,drop,message", [
    (TINY_GPT2_CONFIG, gpt2_tensors(), "transformer.ln_f.bias", r"missing tensors: ln_f\.bias"),
    (TINY_GPT2_CONFIG, gpt2_tensors(), "transformer.h.1.attn.c_attn.weight",
     r"missing tensors: h\.1\.attn\.c_attn\.weight\[:, 0:16\], .*\[:, 32:48\]"),
    (TINY_LLAMA_CONFIG, llama_tensors(), "model.layers.1.mlp.up_proj.weight",
     r"missing tensors: layers\.1\.mlp\.up_proj\.weight"),
    (TINY_LLAMA_CONFIG, llama_tensors(), "lm_head.weight", r"missing tensors: lm_head\.weight"),
], ids=["gpt2_norm", "gpt2_fused", "llama_mlp", "llama_untied_head"])
def test_missing_tensor(tmp_path, config, tensors, drop, message):
    del tensors[drop]
    with pytest.raises(ConversionError, match=message):
        load_hf_gpt(_write(tmp_path, config, tensors))


@pytest.mark.parametrize("kind", ["gpt2_fused", "gpt2_position", "llama_key"])
def test_wrong_shape(tmp_path, kind):
    if kind == "llama_key":  # 4 key/value heads' rows where the config says 2
        config, tensors = TINY_LLAMA_CONFIG, llama_tensors()
        tensors["model.layers.0.self_attn.k_proj.weight"] = np.zeros((64, 64), np.float32)
        message = (r"shape disagrees with config\.json: "
                   r"model\.layers\.0\.self_attn\.k_proj\.weight \(64, 64\) .*\(32, 64\)")
    else:
        config, tensors = TINY_GPT2_CONFIG, gpt2_tensors()
        name, shape = (("transformer.h.0.attn.c_attn.weight", (16, 32)) if kind == "gpt2_fused"
                       else ("transformer.wpe.weight", (12, 16)))
        tensors[name] = np.zeros(shape, np.float32)
        message = rf"shape disagrees with config\.json: {name} \({shape[0]}, {shape[1]}\)"
    with pytest.raises(ConversionError, match=message):
        load_hf_gpt(_write(tmp_path, config, tensors))


def test_unexpected_tensor(tmp_path):
    tensors = llama_tensors()
    tensors["model.layers.0.self_attn.q_proj.bias"] = np.zeros(64, np.float32)
    with pytest.raises(ConversionError, match=r"unexpected tensors \(not part of a llama "
                                              r"causal LM\): model\.layers\.0\.self_attn"):
        load_hf_gpt(_write(tmp_path, TINY_LLAMA_CONFIG, tensors))


def test_tied_head_that_differs_from_the_embedding(tmp_path):
    tensors = gpt2_tensors()
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"] + 1.0
    with pytest.raises(ConversionError, match=r"lm_head\.weight differs from "
                                              r"transformer\.wte\.weight"):
        load_hf_gpt(_write(tmp_path, TINY_GPT2_CONFIG, tensors))


@pytest.mark.parametrize("changes,message", [
    ({"model_type": "gpt_neox"}, r"gpt_neox is not supported; supported: bert, gpt2, llama"),
    ({"model_type": None}, r"model_type=None"),
    ({"activation_function": "gelu"}, r"activation_function 'gelu' is not supported"),
    ({"n_head": 5}, r"hidden_size 16 is not a multiple of num_heads 5"),
    ({"n_layer": 0}, r"n_layer must be a positive integer"),
    ({"scale_attn_by_inverse_layer_idx": True}, r"scale_attn_by_inverse_layer_idx"),
], ids=["unknown_model_type", "no_model_type", "activation", "heads", "layers", "scaling"])
def test_unsupported_gpt2_configs(tmp_path, changes, message):
    config = {k: v for k, v in {**TINY_GPT2_CONFIG, **changes}.items() if v is not None}
    with pytest.raises(ConversionError, match=message):
        load_hf_gpt(_write(tmp_path, config, gpt2_tensors()))


@pytest.mark.parametrize("changes,message", [
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, r"rope_scaling .* not supported"),
    ({"attention_bias": True}, r"attention_bias"),
    ({"hidden_act": "gelu"}, r"hidden_act 'gelu'"),
    ({"num_key_value_heads": 3}, r"num_heads 4 is not a multiple of num_key_value_heads 3"),
    ({"head_dim": 32}, r"head_dim 32"),
    ({"hidden_size": None}, r"lacks hidden_size"),
    ({"hidden_size": 60}, r"head size 15 is odd"),
], ids=["rope_scaling", "bias", "activation", "kv_heads", "head_dim", "missing_size",
        "odd_head_size"])
def test_unsupported_llama_configs(tmp_path, changes, message):
    config = {k: v for k, v in {**TINY_LLAMA_CONFIG, **changes}.items() if v is not None}
    with pytest.raises(ConversionError, match=message):
        load_hf_gpt(_write(tmp_path, config, llama_tensors()))


def test_missing_files(tmp_path):
    with pytest.raises(ConversionError, match="is not a directory"):
        load_hf_gpt(tmp_path / "nowhere")
    directory = _write(tmp_path, TINY_GPT2_CONFIG, gpt2_tensors())
    os.remove(os.path.join(directory, "model.safetensors"))
    with pytest.raises(ConversionError, match=r"lacks model\.safetensors"):
        load_hf_gpt(directory)
    os.remove(os.path.join(directory, "config.json"))
    with pytest.raises(ConversionError, match=r"lacks config\.json, model\.safetensors"):
        load_hf_gpt(directory)
