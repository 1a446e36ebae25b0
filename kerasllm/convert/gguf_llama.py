"""Loads a Llama-architecture GGUF file (llama.cpp's format) into a GptCausalLM.

A GGUF file holds the model's settings as metadata keys ("llama.block_count",
...), its tokenizer ("tokenizer.ggml.*", read by
kerasllm.tokenizers.byte_gguf, not here) and its tensors, each stored in a
ggml type: plain (F32, F16, BF16) or block-quantised (Q8_0, Q4_1, ...: blocks
of 32 numbers sharing a scale). The gguf package reads the file and
dequantises each tensor to float32 NumPy.

Layout differences the conversion bridges:
  * ggml lists a tensor's dimensions fastest-varying first, so the reader's
    `shape` of a Linear weight is [in, out]; the dequantised array is in NumPy
    (row-major) order, [out, in], as PyTorch stores it. Every projection is
    transposed into a Keras kernel [in, ...], as for Hugging Face checkpoints.
  * Rotary positions pair a head's features differently. llama.cpp rotates
    adjacent pairs (2p, 2p + 1); Hugging Face Llama checkpoints, and our
    RotaryEmbedding, rotate the pairs (p, p + d/2), both by the angle
    position * theta ** (-2p / d) (d = head size, p < d/2). When llama.cpp
    converts a Hugging Face checkpoint it reorders the rows of each head of the
    query and key projections so that its adjacent pairs are Hugging Face's
    split pairs: row s * d/2 + p of a head (s = 0 or 1, the pair's first or
    second member) becomes row 2p + s. A query-key dot product sums over all d
    features, so the same reordering of both leaves attention scores unchanged;
    only which features rotate together changes. `undo_rope_permutation`
    reverses it (row 2p + s back to s * d/2 + p) for the query (num_heads
    heads) and key (num_key_value_heads heads) projections; values and every
    other weight are stored as in the Hugging Face checkpoint.
  * Norm weights ("attn_norm", "ffn_norm", "output_norm") are RMSNorm scales.
    There is no "output.weight" when the output projection is tied to the
    token embedding ("token_embd.weight", [vocab, hidden]).
"""
import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType
from gguf.quants import dequantize

from kerasllm.convert.checkpoint_mapping import (Assignment, ConversionReport, apply_plan,
                                                 check_plan, listing)
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.llama_weights import GGUF_NAMES, llama_plan
from kerasllm.models.gpt.backbone import GptDecoder
from kerasllm.models.gpt.causal_lm import GptCausalLM
from kerasllm.models.gpt.config import GptConfig

GGUF_MAGIC = b"GGUF"
ARCHITECTURE = "llama"
# The ggml types this loader dequantises (with the gguf package), each checked
# by a test against gguf's own quantiser.
SUPPORTED_TYPES = tuple(GGMLQuantizationType[name] for name in (
    "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"))
_REQUIRED_KEYS = ("block_count", "embedding_length", "attention.head_count",
                  "feed_forward_length", "attention.layer_norm_rms_epsilon",
                  "context_length")
# llama.cpp's value when a file does not state it.
_DEFAULT_ROPE_THETA = 10000.0


def undo_rope_permutation(weight, num_heads):
    """The rows of a GGUF query or key projection, [num_heads * d, in], in Hugging
    Face's order: each head's row 2p + s (s = 0, 1; p < d/2) goes back to row
    s * d/2 + p (see the module docstring)."""
    out_size, in_size = weight.shape
    head_size = out_size // num_heads
    return (weight.reshape(num_heads, head_size // 2, 2, in_size)
            .swapaxes(1, 2).reshape(out_size, in_size))


def _open(path):
    """The GGUFReader of `path`, after checking that it is a GGUF file."""
    if not os.path.isfile(path):
        raise ConversionError(f"{path!r} does not exist or is not a file; expected a GGUF "
                              "model file.")
    with open(path, "rb") as f:
        magic = f.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise ConversionError(f"{path} is not a GGUF file: it starts with {magic!r}, not "
                              f"{GGUF_MAGIC!r}.")
    try:
        return GGUFReader(path)
    except (ValueError, OSError, IndexError, KeyError, TypeError) as error:
        raise ConversionError(f"Cannot read the GGUF file {path}: {error}.") from error


class _Metadata:
    """The metadata keys of an open GGUF file, read with the file's path in errors."""

    def __init__(self, reader, path):
        self.fields = reader.fields
        self.path = path

    def __contains__(self, key):
        return key in self.fields

    def scalar(self, key, default=None):
        """The value of a single-valued key (strings included), `default` if absent.
        Whole numbers come back as int; FLOAT32 values as the shortest decimal that
        rounds to them (so a stored 1e-5 reads 1e-5, not 9.99999974e-06)."""
        field = self.fields.get(key)
        if field is None:
            return default
        if len(field.types) != 1:
            raise ConversionError(f"{self.path}: metadata {key} is an array (one value per "
                                  "layer?); only a single value for every layer is supported.")
        value = field.contents()
        if field.types[0] == GGUFValueType.FLOAT32:
            return float(str(np.float32(value)))
        return value

    def array_length(self, key):
        """The number of elements of an array key, None if absent."""
        field = self.fields.get(key)
        return None if field is None else len(field.data)


def _positive_int(metadata, key):
    value = metadata.scalar(key)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConversionError(f"{metadata.path}: metadata {key} must be a positive integer, "
                              f"got {value!r}.")
    return int(value)


def gguf_llama_config(reader, path):
    """A GptConfig (Llama style) from the metadata of an open GGUF file; the
    vocabulary size is the token embedding's rows, and the embeddings are tied
    when there is no output.weight.

    Args:
      reader: a gguf.GGUFReader of the file.
      path: the file's path, for messages.

    Raises:
      ConversionError: the architecture is not llama, a required key is missing or
        invalid, there is no token_embd.weight, or the file asks for something
        GptDecoder does not implement (rope scaling, partial rotary, mixture of
        experts, per-layer head counts).
    """
    metadata = _Metadata(reader, path)
    architecture = metadata.scalar("general.architecture")
    if architecture is None:
        raise ConversionError(f"{path} has no general.architecture in its metadata.")
    if architecture != ARCHITECTURE:
        raise ConversionError(f"{path} holds a {architecture!r} model; only the "
                              f"{ARCHITECTURE!r} architecture can be converted.")
    prefix = ARCHITECTURE + "."
    missing = [prefix + key for key in _REQUIRED_KEYS if prefix + key not in metadata]
    if missing:
        raise ConversionError(f"{path} lacks the metadata keys {', '.join(missing)}.")
    sizes = {key: _positive_int(metadata, prefix + key)
             for key in ("block_count", "embedding_length", "attention.head_count",
                         "feed_forward_length", "context_length")}
    heads = sizes["attention.head_count"]
    kv_heads = (_positive_int(metadata, prefix + "attention.head_count_kv")
                if prefix + "attention.head_count_kv" in metadata else heads)
    hidden = sizes["embedding_length"]
    if hidden % heads or heads % kv_heads:
        raise ConversionError(f"{path}: embedding_length {hidden}, head_count {heads} and "
                              f"head_count_kv {kv_heads} do not divide evenly.")
    head_size = hidden // heads
    if head_size % 2:
        raise ConversionError(f"{path}: the head size {head_size} is odd; rotary positions "
                              "rotate pairs of features.")
    for key in ("rope.dimension_count", "attention.key_length", "attention.value_length"):
        value = metadata.scalar(prefix + key)
        if value is not None and value != head_size:
            raise ConversionError(
                f"{path}: {prefix}{key} is {value}, not the head size {head_size}; "
                "GptDecoder rotates (and projects) whole heads of embedding_length / "
                "head_count features.")
    scaling = metadata.scalar(prefix + "rope.scaling.type", "none")
    if scaling != "none":
        raise ConversionError(f"{path}: rope scaling {scaling!r} is not supported; "
                              "RotaryEmbedding has no position scaling.")
    experts = metadata.scalar(prefix + "expert_count", 0)
    if experts:
        raise ConversionError(f"{path}: a mixture of {experts} experts is not supported.")
    epsilon = metadata.scalar(prefix + "attention.layer_norm_rms_epsilon")
    theta = metadata.scalar(prefix + "rope.freq_base", _DEFAULT_ROPE_THETA)
    for key, value in (("attention.layer_norm_rms_epsilon", epsilon),
                       ("rope.freq_base", theta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConversionError(f"{path}: metadata {prefix}{key} must be a positive "
                                  f"number, got {value!r}.")
    tensors = {t.name: t for t in reader.tensors}
    if "token_embd.weight" not in tensors:
        raise ConversionError(f"{path} has no token_embd.weight tensor.")
    if "rope_freqs.weight" in tensors:
        raise ConversionError(f"{path} has rope_freqs.weight, per-frequency rotary scaling "
                              "(Llama 3.1 style), which RotaryEmbedding does not implement.")
    vocab_size = int(tensors["token_embd.weight"].shape[-1])  # ggml order: [hidden, vocab]
    tokens = metadata.array_length("tokenizer.ggml.tokens")
    if tokens is not None and tokens > vocab_size:
        raise ConversionError(f"{path}: the tokenizer has {tokens} tokens but token_embd has "
                              f"only {vocab_size} rows.")
    return GptConfig(
        num_layers=sizes["block_count"], hidden_size=hidden, num_heads=heads,
        num_key_value_heads=kv_heads, intermediate_size=sizes["feed_forward_length"],
        vocab_size=vocab_size, max_sequence_length=sizes["context_length"],
        position_embedding="rotary", rope_theta=float(theta), norm="rms_norm",
        norm_epsilon=float(epsilon), feed_forward="swiglu", use_bias=False,
        tie_embeddings="output.weight" not in tensors, dropout=0.0, attention_dropout=0.0)


def read_gguf_tensors(reader, path):
    """{name: (name, float32 array in NumPy order)} of every tensor of an open GGUF
    file, dequantised.

    Raises:
      ConversionError: a tensor's ggml type is not in SUPPORTED_TYPES.
    """
    unsupported = [f"{t.name} ({t.tensor_type.name})" for t in reader.tensors
                   if t.tensor_type not in SUPPORTED_TYPES]
    if unsupported:
        raise ConversionError(
            f"{path} has tensors of unsupported types: {listing(unsupported)}; supported: "
            f"{', '.join(t.name for t in SUPPORTED_TYPES)}.")
    tensors = {}
    for t in reader.tensors:
        array = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32)
        expected = tuple(int(n) for n in reversed(t.shape))
        if array.shape != expected:  # the reader's order, checked rather than assumed
            raise ConversionError(f"{path}: tensor {t.name} dequantises to {array.shape}, "
                                  f"not its declared {expected}.")
        tensors[t.name] = (t.name, array)
    return tensors


def _tokenizer_summary(reader):
    """What the file says of its tokenizer (this module does not build it)."""
    metadata = _Metadata(reader, "")
    return {"kind": "not loaded (use kerasllm.tokenizers.byte_gguf.byte_bpe_from_gguf)",
            "model": metadata.scalar("tokenizer.ggml.model"),
            "pre": metadata.scalar("tokenizer.ggml.pre"),
            "tokens": metadata.array_length("tokenizer.ggml.tokens"),
            "merges": metadata.array_length("tokenizer.ggml.merges")}


def _kernel(dense, tensor, in_size, out_size):
    """A bias-free projection's kernel from a GGUF [out, in] weight."""
    return Assignment(dense.kernel, tensor, (out_size, in_size), transpose=True)


def _assignments(model):
    """Every weight of the Llama-style `model` with the GGUF tensor that fills it."""
    plan = llama_plan(model, GGUF_NAMES)
    if model.lm_head is not None:
        plan.append(_kernel(model.lm_head, "output.weight", model.backbone.config.hidden_size,
                            model.backbone.config.vocab_size))
    return plan


def _undo_rope_permutations(tensors, config):
    """Reorders the query and key rows in place (see undo_rope_permutation);
    tensors of an unexpected shape are left for check_plan to report."""
    for i in range(config.num_layers):
        for kind, heads in (("q", config.num_heads), ("k", config.num_key_value_heads)):
            key = f"blk.{i}.attn_{kind}.weight"
            if key in tensors and tensors[key][1].shape == (heads * config.head_size,
                                                            config.hidden_size):
                tensors[key] = (key, undo_rope_permutation(tensors[key][1], heads))


def load_gguf_llama(path):
    """Builds a GptCausalLM (Llama style) from a llama-architecture GGUF file.

    Args:
      path: the .gguf file, e.g. kerasllm.convert.smollm2.smollm2_gguf_path().

    Returns:
      (model, report): the GptCausalLM with every weight assigned, float32
      (quantised tensors dequantised), and a ConversionReport whose config is
      the model's GptConfig. The tokenizer in the file's metadata is not read:
      see kerasllm.tokenizers.byte_gguf.

    Raises:
      ConversionError: the file is missing or not a GGUF file, its architecture is
        not llama, metadata keys are missing or ask for something unsupported,
        tensors have unsupported ggml types, or tensors are missing, unexpected or
        of the wrong shape.
    """
    path = os.fspath(path)
    reader = _open(path)
    config = gguf_llama_config(reader, path)
    tensors = read_gguf_tensors(reader, path)
    _undo_rope_permutations(tensors, config)

    model = GptCausalLM(GptDecoder(config)).build_for_inputs()
    plan = _assignments(model)
    try:
        check_plan(plan, tensors, {}, path, "Llama causal LM")
    except ConversionError as error:  # the GGUF metadata plays config.json's part
        raise ConversionError(str(error).replace("its config.json", "its metadata")
                              .replace("config.json", "the metadata")) from None
    assigned = apply_plan(plan, tensors, model, {})
    report = ConversionReport(config=config, tokenizer=_tokenizer_summary(reader),
                              assigned=assigned, skipped_tensors={}, unassigned_weights={})
    return model, report
