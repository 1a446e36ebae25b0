"""Loads a Llama-architecture GGUF file (llama.cpp's format) into a GptCausalLM.

A GGUF file (read by kerasllm.convert.gguf_file) holds the model's settings as
metadata keys ("llama.block_count", ...), its tokenizer ("tokenizer.ggml.*", read
by kerasllm.convert.gguf_tokenizer, not here) and its tensors, dequantised to
float32 NumPy by the reader.

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
import numpy as np

from kerasllm.convert.checkpoint_mapping import (Assignment, ConversionReport, apply_plan,
                                                 check_plan)
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.gguf_file import GgufFile
from kerasllm.convert.llama_weights import GGUF_NAMES, llama_plan
from kerasllm.models.gpt.backbone import GptDecoder
from kerasllm.models.gpt.causal_lm import GptCausalLM
from kerasllm.models.gpt.config import GptConfig

ARCHITECTURE = "llama"
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


def _positive_int(gguf, key):
    value = gguf.scalar(key)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ConversionError(f"{gguf.path}: metadata {key} must be a positive integer, "
                              f"got {value!r}.")
    return int(value)


def gguf_llama_config(gguf):
    """A GptConfig (Llama style) from the metadata of an open GGUF file; the
    vocabulary size is the token embedding's rows, and the embeddings are tied
    when there is no output.weight.

    Args:
      gguf: the open GgufFile.

    Raises:
      ConversionError: the architecture is not llama, a required key is missing or
        invalid, there is no token_embd.weight, or the file asks for something
        GptDecoder does not implement (rope scaling, partial rotary, mixture of
        experts, per-layer head counts).
    """
    path = gguf.path
    prefix = gguf.check_architecture(ARCHITECTURE, _REQUIRED_KEYS)
    sizes = {key: _positive_int(gguf, prefix + key)
             for key in ("block_count", "embedding_length", "attention.head_count",
                         "feed_forward_length", "context_length")}
    heads = sizes["attention.head_count"]
    kv_heads = (_positive_int(gguf, prefix + "attention.head_count_kv")
                if prefix + "attention.head_count_kv" in gguf else heads)
    hidden = sizes["embedding_length"]
    if hidden % heads or heads % kv_heads:
        raise ConversionError(f"{path}: embedding_length {hidden}, head_count {heads} and "
                              f"head_count_kv {kv_heads} do not divide evenly.")
    head_size = hidden // heads
    if head_size % 2:
        raise ConversionError(f"{path}: the head size {head_size} is odd; rotary positions "
                              "rotate pairs of features.")
    for key in ("rope.dimension_count", "attention.key_length", "attention.value_length"):
        value = gguf.scalar(prefix + key)
        if value is not None and value != head_size:
            raise ConversionError(
                f"{path}: {prefix}{key} is {value}, not the head size {head_size}; "
                "GptDecoder rotates (and projects) whole heads of embedding_length / "
                "head_count features.")
    scaling = gguf.scalar(prefix + "rope.scaling.type", "none")
    if scaling != "none":
        raise ConversionError(f"{path}: rope scaling {scaling!r} is not supported; "
                              "RotaryEmbedding has no position scaling.")
    experts = gguf.scalar(prefix + "expert_count", 0)
    if experts:
        raise ConversionError(f"{path}: a mixture of {experts} experts is not supported.")
    epsilon = gguf.scalar(prefix + "attention.layer_norm_rms_epsilon")
    theta = gguf.scalar(prefix + "rope.freq_base", _DEFAULT_ROPE_THETA)
    for key, value in (("attention.layer_norm_rms_epsilon", epsilon),
                       ("rope.freq_base", theta)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConversionError(f"{path}: metadata {prefix}{key} must be a positive "
                                  f"number, got {value!r}.")
    tensors = {t.name: t for t in gguf.tensors}
    if "token_embd.weight" not in tensors:
        raise ConversionError(f"{path} has no token_embd.weight tensor.")
    if "rope_freqs.weight" in tensors:
        raise ConversionError(f"{path} has rope_freqs.weight, per-frequency rotary scaling "
                              "(Llama 3.1 style), which RotaryEmbedding does not implement.")
    vocab_size = int(tensors["token_embd.weight"].shape[-1])  # ggml order: [hidden, vocab]
    tokens = gguf.array_length("tokenizer.ggml.tokens")
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


def _tokenizer_summary(gguf):
    """What the file says of its tokenizer (this module does not build it)."""
    return {"kind": "not loaded (use kerasllm.convert.gguf_tokenizer.byte_bpe_from_gguf)",
            "model": gguf.scalar("tokenizer.ggml.model"),
            "pre": gguf.scalar("tokenizer.ggml.pre"),
            "tokens": gguf.array_length("tokenizer.ggml.tokens"),
            "merges": gguf.array_length("tokenizer.ggml.merges")}


def _kernel(dense, tensor, in_size, out_size):
    """A bias-free projection's kernel from a GGUF [out, in] weight."""
    return Assignment(dense.kernel, tensor, (out_size, in_size), transpose=True)


def gguf_llama_plan(model):
    """Every weight of the Llama-style `model` with the GGUF tensor that fills it (read
    by load_gguf_llama, written by gguf_export)."""
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


def load_gguf_llama(source):
    """Builds a GptCausalLM (Llama style) from a llama-architecture GGUF file.

    Args:
      source: the .gguf file (e.g. kerasllm.convert.smollm2.smollm2_gguf_path()),
        or a GgufFile already open.

    Returns:
      (model, report): the GptCausalLM with every weight assigned, float32
      (quantised tensors dequantised), and a ConversionReport whose config is
      the model's GptConfig. The tokenizer in the file's metadata is not read:
      see kerasllm.convert.gguf_tokenizer.

    Raises:
      ConversionError: the file is missing or not a complete GGUF file (see
        GgufFile), its architecture is not llama, metadata keys are missing or ask
        for something unsupported, tensors have unsupported ggml types, or tensors
        are missing, unexpected or of the wrong shape.
    """
    gguf = GgufFile.of(source)
    config = gguf_llama_config(gguf)
    tensors = gguf.float32_tensors()
    _undo_rope_permutations(tensors, config)

    model = GptCausalLM(GptDecoder(config)).build_for_inputs()
    plan = gguf_llama_plan(model)
    try:
        check_plan(plan, tensors, {}, gguf.path, "Llama causal LM")
    except ConversionError as error:  # the GGUF metadata plays config.json's part
        raise ConversionError(str(error).replace("its config.json", "its metadata")
                              .replace("config.json", "the metadata")) from None
    assigned = apply_plan(plan, tensors, model, {})
    report = ConversionReport(config=config, tokenizer=_tokenizer_summary(gguf),
                              assigned=assigned, skipped_tensors={}, unassigned_weights={})
    return model, report
