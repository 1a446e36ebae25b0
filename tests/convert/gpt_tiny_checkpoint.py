"""Small fabricated Hugging Face GPT-2 and Llama checkpoint directories (config.json +
model.safetensors with random weights) for converter tests."""
import json
import os

import numpy as np
from safetensors.numpy import save_file

TINY_GPT2_CONFIG = {
    "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_layer": 2, "n_embd": 16,
    "n_head": 4, "n_positions": 24, "vocab_size": 40, "layer_norm_epsilon": 1e-5,
    "activation_function": "gelu_new", "resid_pdrop": 0.1, "embd_pdrop": 0.1,
    "attn_pdrop": 0.1, "tie_word_embeddings": True}
# Hidden and feed-forward sizes are multiples of 32, ggml's quantisation block,
# so that the same weights can be written as a quantised GGUF file too.
TINY_LLAMA_CONFIG = {
    "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 64,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "intermediate_size": 96, "vocab_size": 50, "max_position_embeddings": 64,
    "rms_norm_eps": 1e-5, "rope_theta": 500.0, "hidden_act": "silu",
    "tie_word_embeddings": False}


def _random(rng, shapes, scale):
    return {name: rng.normal(0, scale, shape).astype(np.float32)
            for name, shape in shapes.items()}


def gpt2_tensors(config=TINY_GPT2_CONFIG, seed=0, prefix="transformer.", buffers=True):
    """Random weights under GPT2LMHeadModel's names (Conv1D weights [in, out]); with
    `buffers`, the per-layer causal-mask buffers old checkpoints carry; with an
    untied config, an lm_head.weight."""
    rng = np.random.default_rng(seed)
    hidden, vocab = config["n_embd"], config["vocab_size"]
    ffn = config.get("n_inner") or 4 * hidden
    shapes = {"wte.weight": (vocab, hidden), "wpe.weight": (config["n_positions"], hidden)}
    for i in range(config["n_layer"]):
        for name, in_size, out_size in (("attn.c_attn", hidden, 3 * hidden),
                                        ("attn.c_proj", hidden, hidden),
                                        ("mlp.c_fc", hidden, ffn), ("mlp.c_proj", ffn, hidden)):
            shapes[f"h.{i}.{name}.weight"] = (in_size, out_size)
            shapes[f"h.{i}.{name}.bias"] = (out_size,)
    tensors = _random(rng, shapes, 0.3)
    for norm in [f"h.{i}.ln_{j}" for i in range(config["n_layer"]) for j in (1, 2)] + ["ln_f"]:
        tensors[norm + ".weight"] = rng.normal(1, 0.1, hidden).astype(np.float32)
        tensors[norm + ".bias"] = rng.normal(0, 0.1, hidden).astype(np.float32)
    if buffers:
        size = config["n_positions"]
        for i in range(config["n_layer"]):
            tensors[f"h.{i}.attn.bias"] = np.tril(np.ones((1, 1, size, size), np.float32))
            tensors[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    tensors = {prefix + name: value for name, value in tensors.items()}
    if not config.get("tie_word_embeddings", True):
        tensors["lm_head.weight"] = rng.normal(0, 0.3, (vocab, hidden)).astype(np.float32)
    return tensors


def llama_tensors(config=TINY_LLAMA_CONFIG, seed=0, prefix="model.", buffers=False):
    """Random weights under LlamaForCausalLM's names (Linear weights [out, in]);
    lm_head.weight unless the config ties it; with `buffers`, the rotary inv_freq
    buffers old checkpoints carry."""
    rng = np.random.default_rng(seed)
    hidden, ffn = config["hidden_size"], config["intermediate_size"]
    heads = config["num_attention_heads"]
    head_size = hidden // heads
    kv_size = config.get("num_key_value_heads", heads) * head_size
    shapes = {"embed_tokens.weight": (config["vocab_size"], hidden)}
    for i in range(config["num_hidden_layers"]):
        for name, out_size, in_size in (
                ("self_attn.q_proj", hidden, hidden), ("self_attn.k_proj", kv_size, hidden),
                ("self_attn.v_proj", kv_size, hidden), ("self_attn.o_proj", hidden, hidden),
                ("mlp.gate_proj", ffn, hidden), ("mlp.up_proj", ffn, hidden),
                ("mlp.down_proj", hidden, ffn)):
            shapes[f"layers.{i}.{name}.weight"] = (out_size, in_size)
    tensors = _random(rng, shapes, 0.2)
    norms = [f"layers.{i}.{name}" for i in range(config["num_hidden_layers"])
             for name in ("input_layernorm", "post_attention_layernorm")] + ["norm"]
    for norm in norms:
        tensors[norm + ".weight"] = rng.normal(1, 0.1, hidden).astype(np.float32)
    if buffers:
        inv_freq = 1.0 / config["rope_theta"] ** (np.arange(0, head_size, 2) / head_size)
        for i in range(config["num_hidden_layers"]):
            tensors[f"layers.{i}.self_attn.rotary_emb.inv_freq"] = inv_freq.astype(np.float32)
    tensors = {prefix + name: value for name, value in tensors.items()}
    if not config.get("tie_word_embeddings", False):
        tensors["lm_head.weight"] = rng.normal(0, 0.2, (config["vocab_size"], hidden)).astype(
            np.float32)
    return tensors


def write_gpt_checkpoint(directory, config, tensors):
    """Writes config.json and model.safetensors into `directory`; returns its path."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(config, f)
    save_file(tensors, os.path.join(directory, "model.safetensors"))
    return str(directory)
