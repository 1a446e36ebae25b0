"""Small fabricated llama-architecture GGUF files, written with the gguf package's
GGUFWriter from Hugging Face-named Llama weights (tests/convert/gpt_tiny_checkpoint),
laid out as llama.cpp lays out a converted checkpoint: Hugging Face names mapped to
ggml's, 2-D weights in the requested ggml type (norms stay F32), and each head's
query/key rows reordered for adjacent-pair rotary positions."""
import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.quants import quantize

from tests.convert.gpt_tiny_checkpoint import TINY_LLAMA_CONFIG, llama_tensors

_LAYER_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def adjacent_pair_rows(weight, num_heads):
    """`weight` [num_heads * d, in] with each head's rows reordered so that the
    features Hugging Face rotates together, (p, p + d/2), sit next to each other
    at (2p, 2p + 1): new row 2p + s of a head is old row s * d/2 + p."""
    head_size = weight.shape[0] // num_heads
    half = head_size // 2
    order = [h * head_size + s * half + p
             for h in range(num_heads) for p in range(half) for s in (0, 1)]
    return weight[order]


def gguf_name(hf_name):
    """The ggml name of a Hugging Face Llama tensor name (without "model.")."""
    fixed = {"embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    if hf_name in fixed:
        return fixed[hf_name]
    _, index, rest = hf_name.split(".", 2)
    return f"blk.{index}.{_LAYER_NAMES[rest.removesuffix('.weight')]}.weight"


def llama_metadata(config=TINY_LLAMA_CONFIG):
    """{key: (value, kind)} of the llama.* keys for a Hugging Face Llama config."""
    heads = config["num_attention_heads"]
    return {
        "llama.block_count": (config["num_hidden_layers"], "uint32"),
        "llama.context_length": (config["max_position_embeddings"], "uint32"),
        "llama.embedding_length": (config["hidden_size"], "uint32"),
        "llama.feed_forward_length": (config["intermediate_size"], "uint32"),
        "llama.attention.head_count": (heads, "uint32"),
        "llama.attention.head_count_kv": (config.get("num_key_value_heads", heads), "uint32"),
        "llama.rope.freq_base": (config["rope_theta"], "float32"),
        "llama.attention.layer_norm_rms_epsilon": (config["rms_norm_eps"], "float32"),
        "llama.rope.dimension_count": (config["hidden_size"] // heads, "uint32"),
    }


def gguf_tensors(config=TINY_LLAMA_CONFIG, hf_tensors=None):
    """{ggml name: float32 array} of Hugging Face Llama weights, query and key rows
    reordered as llama.cpp's converter does."""
    hf_tensors = llama_tensors(config) if hf_tensors is None else hf_tensors
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    out = {}
    for name, value in hf_tensors.items():
        name = gguf_name(name.removeprefix("model."))
        if name.endswith("attn_q.weight"):
            value = adjacent_pair_rows(value, heads)
        elif name.endswith("attn_k.weight"):
            value = adjacent_pair_rows(value, kv_heads)
        out[name] = value
    return out


def write_gguf(path, tensors, metadata, architecture="llama", qtype=GGMLQuantizationType.F32,
               tokens=None):
    """Writes a GGUF file: `metadata` {key: (value, kind)} with kind a GGUFWriter
    add_<kind> method ("uint32", "float32", "string"); `tensors` {name: float32
    array in NumPy order}, 2-D ones stored as `qtype` and 1-D ones as F32 (or as
    they are, if not float32); optionally a tokenizer.ggml.tokens list."""
    writer = GGUFWriter(str(path), architecture)
    for key, (value, kind) in metadata.items():
        getattr(writer, "add_" + kind)(key, value)
    if tokens is not None:
        writer.add_array("tokenizer.ggml.tokens", tokens)
    for name, value in tensors.items():
        if value.dtype != np.float32 or value.ndim == 1 or qtype == GGMLQuantizationType.F32:
            writer.add_tensor(name, value)
        elif qtype == GGMLQuantizationType.F16:
            writer.add_tensor(name, value.astype(np.float16))
        else:
            writer.add_tensor(name, quantize(value, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


def write_tiny_gguf(path, config=TINY_LLAMA_CONFIG, qtype=GGMLQuantizationType.F32,
                    hf_tensors=None, drop_keys=(), extra_metadata=None, drop_tensors=(),
                    extra_tensors=None, architecture="llama"):
    """A tiny llama GGUF file of `config`'s random Llama weights, with keys or
    tensors dropped or added for error tests."""
    metadata = {key: value for key, value in llama_metadata(config).items()
                if key not in drop_keys}
    metadata.update(extra_metadata or {})
    tensors = {name: value for name, value in gguf_tensors(config, hf_tensors).items()
               if name not in drop_tensors}
    tensors.update(extra_tensors or {})
    return write_gguf(path, tensors, metadata, architecture, qtype)
