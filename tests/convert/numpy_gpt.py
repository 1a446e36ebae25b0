"""Reference decoder-only forward passes in float64 NumPy, straight from the equations.

Written from the papers (Radford et al. 2019, "Language models are unsupervised
multitask learners" (GPT-2); Touvron et al. 2023, "LLaMA"; Su et al. 2021,
"RoFormer" (rotary positions); Zhang and Sennrich 2019 (RMSNorm); Shazeer 2020
(GLU variants); Ainslie et al. 2023 (grouped-query attention)) and the tensor
names of Hugging Face and GGUF files, sharing no code with kerasllm, so that
agreement with GptCausalLM checks a converter and the Keras layers at once. One
unpadded sequence at a time; weights are kept as loaded (float32) and widened to
float64 where they are used, so a 135M-weight model costs no extra gigabyte.

GPT-2 (`NumpyGpt2`), for tokens t_0 .. t_{n-1}:
    x = W_token[t] + W_position[0..n)
    per layer:  h = LN_1(x);  [Q | K | V] = h W_attn + b_attn      (Conv1D: W is [in, out])
                x = x + concat_heads(Attention(Q, K, V)) W_proj + b_proj
                x = x + GELU_tanh(LN_2(x) W_fc + b_fc) W_fc_proj + b_fc_proj
    logits = LN_f(x) W_token^T (tied; else the lm_head's [vocab, hidden] weight)
    LN(z) = gamma (z - mean z) / sqrt(var z + eps) + beta
    GELU_tanh(z) = z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))

Llama (`NumpyLlama`):
    x = W_token[t]
    per layer:  h = RMS_attn(x);  Q = h W_q^T, K = h W_k^T, V = h W_v^T  (Linear: W is [out, in])
                rotate every head of Q and K to its token's position (below)
                x = x + concat_heads(Attention(Q, K, V)) W_o^T
                h = RMS_ffn(x);  x = x + (SiLU(h W_gate^T) * (h W_up^T)) W_down^T
    logits = RMS_final(x) W_token^T (tied) or RMS_final(x) W_head^T
    RMS(z) = g z / sqrt(mean(z^2) + eps);  SiLU(z) = z / (1 + exp(-z))

Attention: per query head j, softmax(Q_j K_kv^T / sqrt(d) + causal mask) V_kv, where
the key/value head is kv = j // (query heads / key-value heads) (grouped-query).

Rotary positions, feature pair p = 0 .. d/2 - 1 of a head of size d, at position m:
    angle = m * theta ** (-2p / d);  (a, b) -> (a cos - b sin, a sin + b cos)
with the pair (a, b) being features (p, p + d/2) ("half": Hugging Face
checkpoints) or (2p, 2p + 1) ("adjacent": the RoFormer paper, and llama.cpp,
whose GGUF files are laid out for it).
"""
import json
import math
import os

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import load_file

ROPE_PAIRS = ("half", "adjacent")


def _f64(array):
    return np.asarray(array, dtype=np.float64)


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def layer_norm(z, gamma, beta, epsilon):
    mean = z.mean(axis=-1, keepdims=True)
    variance = ((z - mean) ** 2).mean(axis=-1, keepdims=True)
    return (z - mean) / np.sqrt(variance + epsilon) * _f64(gamma) + _f64(beta)


def rms_norm(z, gain, epsilon):
    return z / np.sqrt((z ** 2).mean(axis=-1, keepdims=True) + epsilon) * _f64(gain)


def gelu_tanh(z):
    return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))


def silu(z):
    return z / (1.0 + np.exp(-z))


def rotate(x, theta, pairs):
    """x [length, heads, d] rotated to positions 0 .. length - 1 (see the module
    docstring); `pairs` is "half" or "adjacent"."""
    length, _, d = x.shape
    p = np.arange(d // 2)
    first, second = (p, p + d // 2) if pairs == "half" else (2 * p, 2 * p + 1)
    angles = np.arange(length)[:, None] * theta ** (-2.0 * p / d)  # [length, d/2]
    cos, sin = np.cos(angles)[:, None, :], np.sin(angles)[:, None, :]
    a, b = x[..., first], x[..., second]
    out = np.empty_like(x)
    out[..., first] = a * cos - b * sin
    out[..., second] = a * sin + b * cos
    return out


def causal_attention(q, k, v):
    """q [length, H, d], k and v [length, KV, d] -> [length, H * d]."""
    length, num_heads, d = q.shape
    group = num_heads // k.shape[1]
    future = np.triu(np.ones((length, length), dtype=bool), k=1)
    heads = []
    for j in range(num_heads):
        kv = j // group
        scores = q[:, j] @ k[:, kv].T / math.sqrt(d)
        scores[future] = -np.inf
        heads.append(_softmax(scores) @ v[:, kv])
    return np.concatenate(heads, axis=-1)


class NumpyGpt2:
    """GPT-2 from a Hugging Face directory: config.json + model.safetensors (names
    with or without the "transformer." prefix of GPT2LMHeadModel)."""

    def __init__(self, directory):
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        self.num_layers = config["n_layer"]
        self.num_heads = config["n_head"]
        self.epsilon = config.get("layer_norm_epsilon", 1e-5)
        self.tied = config.get("tie_word_embeddings", True)
        tensors = load_file(os.path.join(directory, "model.safetensors"))
        self.t = {name.removeprefix("transformer."): value for name, value in tensors.items()}

    def _ln(self, x, name):
        return layer_norm(x, self.t[name + ".weight"], self.t[name + ".bias"], self.epsilon)

    def _conv1d(self, x, name):
        return x @ _f64(self.t[name + ".weight"]) + _f64(self.t[name + ".bias"])

    def __call__(self, token_ids):
        """int [length] -> float64 logits [length, vocab]."""
        t = self.t
        ids = np.asarray(token_ids)
        length = len(ids)
        x = _f64(t["wte.weight"][ids]) + _f64(t["wpe.weight"][:length])
        for i in range(self.num_layers):
            layer = f"h.{i}"
            qkv = self._conv1d(self._ln(x, f"{layer}.ln_1"), f"{layer}.attn.c_attn")
            q, k, v = (part.reshape(length, self.num_heads, -1)
                       for part in np.split(qkv, 3, axis=-1))
            x = x + self._conv1d(causal_attention(q, k, v), f"{layer}.attn.c_proj")
            hidden = gelu_tanh(self._conv1d(self._ln(x, f"{layer}.ln_2"), f"{layer}.mlp.c_fc"))
            x = x + self._conv1d(hidden, f"{layer}.mlp.c_proj")
        x = self._ln(x, "ln_f")
        head = t["wte.weight"] if self.tied else t["lm_head.weight"]
        return x @ _f64(head).T


# Llama weights under neutral names; per-layer names carry "{i}".
_HF_LLAMA_NAMES = {
    "embed": "model.embed_tokens.weight", "final_norm": "model.norm.weight",
    "head": "lm_head.weight",
    "attn_norm": "model.layers.{i}.input_layernorm.weight",
    "q": "model.layers.{i}.self_attn.q_proj.weight",
    "k": "model.layers.{i}.self_attn.k_proj.weight",
    "v": "model.layers.{i}.self_attn.v_proj.weight",
    "o": "model.layers.{i}.self_attn.o_proj.weight",
    "ffn_norm": "model.layers.{i}.post_attention_layernorm.weight",
    "gate": "model.layers.{i}.mlp.gate_proj.weight",
    "up": "model.layers.{i}.mlp.up_proj.weight",
    "down": "model.layers.{i}.mlp.down_proj.weight",
}
_GGUF_LLAMA_NAMES = {
    "embed": "token_embd.weight", "final_norm": "output_norm.weight", "head": "output.weight",
    "attn_norm": "blk.{i}.attn_norm.weight", "q": "blk.{i}.attn_q.weight",
    "k": "blk.{i}.attn_k.weight", "v": "blk.{i}.attn_v.weight",
    "o": "blk.{i}.attn_output.weight", "ffn_norm": "blk.{i}.ffn_norm.weight",
    "gate": "blk.{i}.ffn_gate.weight", "up": "blk.{i}.ffn_up.weight",
    "down": "blk.{i}.ffn_down.weight",
}


def read_gguf_tensors(path):
    """({metadata key: value} for scalar and string keys, {tensor name: float32
    array}) of a GGUF file, dequantised with the gguf package. NumPy order: a
    Linear weight comes out [out, in], as in PyTorch."""
    reader = GGUFReader(path)
    metadata = {}
    for key, field in reader.fields.items():
        if len(field.types) == 1:  # not an array
            metadata[key] = field.contents()
    tensors = {t.name: np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
               for t in reader.tensors}
    return metadata, tensors


class NumpyLlama:
    """A Llama-style decoder: RMSNorm, rotary positions, grouped-query attention,
    SwiGLU, no biases. Build it with `from_hf_directory` or `from_gguf`."""

    def __init__(self, tensors, names, num_layers, num_heads, num_kv_heads, epsilon, theta,
                 pairs, tied):
        if pairs not in ROPE_PAIRS:
            raise ValueError(f"pairs must be one of {ROPE_PAIRS}")
        self.tensors, self.names = tensors, names
        self.num_layers, self.num_heads, self.num_kv_heads = num_layers, num_heads, num_kv_heads
        self.epsilon, self.theta, self.pairs, self.tied = epsilon, theta, pairs, tied

    @classmethod
    def from_hf_directory(cls, directory):
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        heads = config["num_attention_heads"]
        return cls(load_file(os.path.join(directory, "model.safetensors")), _HF_LLAMA_NAMES,
                   config["num_hidden_layers"], heads,
                   config.get("num_key_value_heads", heads), config.get("rms_norm_eps", 1e-6),
                   config.get("rope_theta", 10000.0), "half",
                   config.get("tie_word_embeddings", False))

    @classmethod
    def from_gguf(cls, path):
        """The model of a llama-architecture GGUF file, rotating adjacent pairs as
        llama.cpp does: the layout its Q/K rows are stored for."""
        metadata, read = read_gguf_tensors(path)
        heads = metadata["llama.attention.head_count"]
        return cls(read, _GGUF_LLAMA_NAMES,
                   metadata["llama.block_count"], heads,
                   metadata.get("llama.attention.head_count_kv", heads),
                   float(metadata["llama.attention.layer_norm_rms_epsilon"]),
                   float(metadata.get("llama.rope.freq_base", 10000.0)), "adjacent",
                   "output.weight" not in read)

    def weight(self, role, layer=None):
        return self.tensors[self.names[role].format(i=layer)]

    def _linear(self, x, role, layer):
        return x @ _f64(self.weight(role, layer)).T

    def __call__(self, token_ids):
        """int [length] -> float64 logits [length, vocab]."""
        ids = np.asarray(token_ids)
        length = len(ids)
        x = _f64(self.weight("embed")[ids])
        for i in range(self.num_layers):
            h = rms_norm(x, self.weight("attn_norm", i), self.epsilon)
            q = self._linear(h, "q", i).reshape(length, self.num_heads, -1)
            k = self._linear(h, "k", i).reshape(length, self.num_kv_heads, -1)
            v = self._linear(h, "v", i).reshape(length, self.num_kv_heads, -1)
            q, k = rotate(q, self.theta, self.pairs), rotate(k, self.theta, self.pairs)
            x = x + self._linear(causal_attention(q, k, v), "o", i)
            h = rms_norm(x, self.weight("ffn_norm", i), self.epsilon)
            x = x + self._linear(silu(self._linear(h, "gate", i)) * self._linear(h, "up", i),
                                 "down", i)
        x = rms_norm(x, self.weight("final_norm"), self.epsilon)
        return x @ _f64(self.weight("embed" if self.tied else "head")).T
