"""Loads a GPT-2-architecture GGUF file (llama.cpp's "gpt2", as kerasllm.convert.
gguf_export writes GPT-2-style models) into a GptCausalLM.

llama.cpp names GPT-2's Hugging Face tensors differently ("h.0.attn.c_attn" is
"blk.0.attn_qkv") and stores every matrix [out, in] in NumPy order, where GPT-2's
Conv1D weights are [in, out]; `HF_TO_GGUF` is the one name table both directions
use. Once renamed and transposed back, the tensors are a Hugging Face GPT-2
checkpoint's, read by kerasllm.convert.hf_gpt's plan.
"""
import numpy as np

from kerasllm.convert.errors import ConversionError
from kerasllm.convert.gguf_file import GgufFile
from kerasllm.convert.hf_gpt import gpt_config_from_hf, gpt_from_tensors

ARCHITECTURE = "gpt2"
# Whole-model tensors; per-layer modules below ("h.{i}.<module>.<kind>").
HF_TO_GGUF = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
              "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias",
              "lm_head.weight": "output.weight"}
LAYER_MODULES = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
                 "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}
_REQUIRED_KEYS = ("block_count", "embedding_length", "attention.head_count",
                  "feed_forward_length", "attention.layer_norm_epsilon", "context_length")


def gguf_name(hf_name):
    """The ggml name of a Hugging Face GPT-2 tensor (without "transformer.")."""
    if hf_name in HF_TO_GGUF:
        return HF_TO_GGUF[hf_name]
    _, layer, rest = hf_name.split(".", 2)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{LAYER_MODULES[module]}.{kind}"


def to_gguf_layout(hf_name, value):
    """A Hugging Face GPT-2 tensor as llama.cpp stores it: Conv1D weights [in, out]
    transposed to [out, in] (its own inverse)."""
    conv1d = value.ndim == 2 and not hf_name.startswith(("wte.", "wpe.", "lm_head."))
    return np.ascontiguousarray(value.T) if conv1d else value


def _hf_names():
    """{ggml name pattern: Hugging Face name pattern} for renaming a file's tensors."""
    names = {gguf: hf for hf, gguf in HF_TO_GGUF.items()}
    for module, ggml_module in LAYER_MODULES.items():
        for kind in ("weight", "bias"):
            names[f"blk.{{i}}.{ggml_module}.{kind}"] = f"h.{{i}}.{module}.{kind}"
    return names


def _hf_name(ggml_name, names):
    if ggml_name in names:
        return names[ggml_name]
    parts = ggml_name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit():
        pattern = names.get(f"blk.{{i}}.{parts[2]}")
        if pattern is not None:
            return pattern.format(i=parts[1])
    return ggml_name  # reported as unexpected by the plan check


def load_gguf_gpt2(source):
    """Builds a GptCausalLM (GPT-2 style) from a gpt2-architecture GGUF file.

    Returns:
      (model, report) as kerasllm.convert.hf_gpt.load_hf_gpt.

    Raises:
      ConversionError: not a complete GGUF file, another architecture, missing or
        invalid metadata, or tensors missing, unexpected or of the wrong shape.
    """
    gguf = GgufFile.of(source)
    prefix = gguf.check_architecture(ARCHITECTURE, _REQUIRED_KEYS)
    tensors = gguf.float32_tensors()
    if "token_embd.weight" not in tensors:
        raise ConversionError(f"{gguf.path} has no token_embd.weight tensor.")
    hf_config = {
        "model_type": "gpt2", "n_layer": gguf.scalar(prefix + "block_count"),
        "n_embd": gguf.scalar(prefix + "embedding_length"),
        "n_head": gguf.scalar(prefix + "attention.head_count"),
        "n_inner": gguf.scalar(prefix + "feed_forward_length"),
        "n_positions": gguf.scalar(prefix + "context_length"),
        "layer_norm_epsilon": gguf.scalar(prefix + "attention.layer_norm_epsilon"),
        "vocab_size": int(tensors["token_embd.weight"][1].shape[0]),
        "tie_word_embeddings": "output.weight" not in tensors,
        "resid_pdrop": 0.0, "attn_pdrop": 0.0}
    config = gpt_config_from_hf(hf_config, source=f"{gguf.path} metadata")
    names = _hf_names()
    renamed = {}
    for ggml_name, (_, value) in tensors.items():
        hf_name = _hf_name(ggml_name, names)
        renamed[hf_name] = (ggml_name, to_gguf_layout(hf_name, value))
    return gpt_from_tensors(config, ARCHITECTURE, renamed, gguf.path)
