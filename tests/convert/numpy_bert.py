"""A reference BERT forward pass in float64 NumPy, straight from the published equations.

Written from the papers (Vaswani et al. 2017, "Attention is all you need";
Devlin et al. 2019, "BERT") and the tensor names of Hugging Face checkpoints,
sharing no code with kerasllm, so that agreement with BertEncoder checks the
conversion and the Keras layers at once. One unpadded sequence at a time:
padding is exactly what the batched Keras run must show to be harmless.

    x_0 = LayerNorm(E_token[ids] + E_position[0..n) + E_segment[segments])
    per layer, with heads h = 1..H of size d = hidden / H:
      Q_h, K_h, V_h = x W_q,h + b_q,h, ...;  A_h = softmax(Q_h K_h^T / sqrt(d)) V_h
      y = LayerNorm(x + concat_h(A_h) W_o + b_o)
      x' = LayerNorm(y + GELU(y W_1 + b_1) W_2 + b_2),  GELU(z) = z/2 (1 + erf(z / sqrt 2))
    LayerNorm(z) = gamma (z - mean(z)) / sqrt(var(z) + eps) + beta, over the hidden axis.
A checkpoint's Linear weight W is stored [out, in] and applied as z W^T.
"""
import json
import math
import os

import numpy as np
from safetensors.numpy import load_file

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(z):
    return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class NumpyBert:
    """The encoder of a checkpoint directory (config.json + model.safetensors)."""

    def __init__(self, directory):
        with open(os.path.join(directory, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
        self.num_layers = config["num_hidden_layers"]
        self.num_heads = config["num_attention_heads"]
        self.epsilon = config.get("layer_norm_eps", 1e-12)
        tensors = load_file(os.path.join(directory, "model.safetensors"))
        self.tensors = {name.removeprefix("bert."): value.astype(np.float64)
                        for name, value in tensors.items()}

    def _linear(self, x, name):
        return x @ self.tensors[name + ".weight"].T + self.tensors[name + ".bias"]

    def _layer_norm(self, x, name):
        mean = x.mean(axis=-1, keepdims=True)
        variance = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        normalized = (x - mean) / np.sqrt(variance + self.epsilon)
        return normalized * self.tensors[name + ".weight"] + self.tensors[name + ".bias"]

    def _self_attention(self, x, prefix):
        length, hidden = x.shape
        head_size = hidden // self.num_heads

        def heads(name):  # [length, hidden] -> [heads, length, head_size]
            projected = self._linear(x, f"{prefix}.self.{name}")
            return projected.reshape(length, self.num_heads, head_size).transpose(1, 0, 2)

        q, k, v = heads("query"), heads("key"), heads("value")
        weights = _softmax(q @ k.transpose(0, 2, 1) / math.sqrt(head_size))
        context = (weights @ v).transpose(1, 0, 2).reshape(length, hidden)
        return self._linear(context, f"{prefix}.output.dense")

    def __call__(self, token_ids, segment_ids):
        """int [length], int [length] -> float64 [length, hidden] sequence output."""
        t = self.tensors
        length = len(token_ids)
        x = (t["embeddings.word_embeddings.weight"][np.asarray(token_ids)]
             + t["embeddings.position_embeddings.weight"][:length]
             + t["embeddings.token_type_embeddings.weight"][np.asarray(segment_ids)])
        x = self._layer_norm(x, "embeddings.LayerNorm")
        for index in range(self.num_layers):
            layer = f"encoder.layer.{index}"
            x = self._layer_norm(x + self._self_attention(x, f"{layer}.attention"),
                                 f"{layer}.attention.output.LayerNorm")
            feed_forward = self._linear(_gelu(self._linear(x, f"{layer}.intermediate.dense")),
                                        f"{layer}.output.dense")
            x = self._layer_norm(x + feed_forward, f"{layer}.output.LayerNorm")
        return x


def mean_pooled(sequence_output):
    """[length, hidden] -> the unit-length mean of the tokens, [hidden]."""
    mean = sequence_output.mean(axis=0)
    return mean / np.linalg.norm(mean)
