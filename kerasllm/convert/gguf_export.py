"""Writes a GptCausalLM as a GGUF file, llama.cpp's format (also Ollama's and LM
Studio's), with its tokenizer and chat template in the metadata.

Llama-style models go to llama.cpp's "llama" architecture, GPT-2-style ones to its
"gpt2" architecture; the weights are laid out as llama.cpp's own converter lays out
a Hugging Face checkpoint (the layout kerasllm.convert.gguf_llama reads back):
  * every 2-D weight is [out, in] in NumPy order (ggml lists dimensions fastest
    first, so its shape reads [in, out]);
  * Llama's query and key rows are reordered per head for adjacent-pair rotary
    positions (`rope_permutation`, the inverse of gguf_llama.undo_rope_permutation);
  * GPT-2's query, key and value are one fused attn_qkv.
Weights are stored as F32, F16 or Q8_0 (blocks of 32 int8 numbers sharing a float16
scale, quantised by the gguf package); 1-D tensors (norms, biases) always as F32, and
a matrix whose rows are not a multiple of 32 long stays F32 under Q8_0.
"""
import os

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, LlamaFileType
from gguf.quants import quantize

from kerasllm.atomic_files import atomic_output
from kerasllm.convert.checkpoint_mapping import planned_tensors
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.gguf_file import GgufFile
from kerasllm.convert.gguf_gpt2 import gguf_name, to_gguf_layout
from kerasllm.convert.gguf_tokenizer import add_tokenizer
from kerasllm.convert.hf_gpt import gpt_style, hf_gpt_tensors
from kerasllm.convert.gguf_llama import gguf_llama_plan

# dtype name -> (ggml type of the matrices, the file type general.file_type records).
DTYPES = {"f32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
          "f16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
          "q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0)}
_Q8_BLOCK = 32
def rope_permutation(weight, num_heads):
    """A Hugging Face query or key projection [num_heads * d, in] with each head's row
    s * d/2 + p (s = 0, 1; p < d/2) moved to row 2p + s, as llama.cpp stores it."""
    out_size, in_size = weight.shape
    head_size = out_size // num_heads
    return (weight.reshape(num_heads, 2, head_size // 2, in_size)
            .swapaxes(1, 2).reshape(out_size, in_size))


def _llama_tensors(model):
    config = model.backbone.config
    tensors = planned_tensors(gguf_llama_plan(model))
    for i in range(config.num_layers):
        for kind, heads in (("q", config.num_heads), ("k", config.num_key_value_heads)):
            name = f"blk.{i}.attn_{kind}.weight"
            tensors[name] = rope_permutation(tensors[name], heads)
    return tensors


def _gpt2_tensors(model):
    return {gguf_name(name): to_gguf_layout(name, value) for name, value in
            ((name.removeprefix("transformer."), value)
             for name, value in hf_gpt_tensors(model).items())}


def _add_hyperparameters(writer, architecture, config):
    writer.add_context_length(config.max_sequence_length)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_heads)
    if architecture == "llama":
        writer.add_head_count_kv(config.num_key_value_heads)
        writer.add_rope_dimension_count(config.head_size)
        writer.add_rope_freq_base(config.rope_theta)
        writer.add_layer_norm_rms_eps(config.norm_epsilon)
        writer.add_vocab_size(config.vocab_size)
    else:
        writer.add_layer_norm_eps(config.norm_epsilon)


def _add_tensor(writer, name, value, ggml_type):
    if value.ndim == 1 or ggml_type == GGMLQuantizationType.F32 or (
            ggml_type == GGMLQuantizationType.Q8_0 and value.shape[-1] % _Q8_BLOCK):
        writer.add_tensor(name, value.astype(np.float32))
    elif ggml_type == GGMLQuantizationType.F16:
        writer.add_tensor(name, value.astype(np.float16))
    else:
        writer.add_tensor(name, quantize(value, ggml_type), raw_dtype=ggml_type)


def save_to_gguf(model, path, dtype="f32", name=None, overwrite=False):
    """Writes `model` (a GptCausalLM of Llama or GPT-2 style, with its tokenizer) as a
    GGUF file; returns its path.

    Args:
      model: the task; LoRA adapters must be merged first (merge_lora()).
      path: the new .gguf file.
      dtype: "f32", "f16" or "q8_0" (see the module docstring).
      name: general.name in the metadata (default: the file's name).
      overwrite: replace an existing file.

    Raises:
      ConversionError: a model llama.cpp's llama and gpt2 architectures do not hold,
        an unknown dtype, unmerged adapters, a tokenizer GGUF cannot carry, or
        `path` exists.
    """
    from kerasllm.models.gpt.causal_lm import GptCausalLM  # models import convert
    from kerasllm.models.lora import lora_layers
    if not isinstance(model, GptCausalLM):
        raise ConversionError(f"a {type(model).__name__} cannot be written as GGUF; "
                              "llama.cpp runs decoders: pass a GptCausalLM")
    if dtype not in DTYPES:
        raise ConversionError(f"dtype {dtype!r} is not one kerasllm writes to GGUF; choose "
                              f"{', '.join(DTYPES)}")
    if lora_layers(model.backbone):
        raise ConversionError("the model has unmerged LoRA adapters; call merge_lora() "
                              "first (llama.cpp would need them as a separate adapter file)")
    tokenizer = model.needs_tokenizer("save_to_gguf")
    config = model.backbone.config
    architecture = gpt_style(config)
    tensors = _llama_tensors(model) if architecture == "llama" else _gpt2_tensors(model)
    ggml_type, file_type = DTYPES[dtype]
    renderer = model.chat_renderer()
    try:
        with atomic_output(path, overwrite=overwrite) as scratch:
            writer = GGUFWriter(scratch, architecture)
            writer.add_name(name or os.path.splitext(os.path.basename(path))[0])
            writer.add_file_type(file_type)
            if ggml_type == GGMLQuantizationType.Q8_0:
                writer.add_quantization_version(2)
            _add_hyperparameters(writer, architecture, config)
            add_tokenizer(writer, tokenizer, config.vocab_size)
            if renderer is not None:
                writer.add_chat_template(renderer.source)
            for tensor_name, value in tensors.items():
                _add_tensor(writer, tensor_name, value, ggml_type)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
            writer.close()
            GgufFile(scratch)  # complete and parseable, as a reader sees it
    except FileExistsError as error:
        raise ConversionError(f"{error} (--overwrite)") from None
    return os.path.abspath(path)
