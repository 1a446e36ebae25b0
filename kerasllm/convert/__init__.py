"""Converters from published checkpoints to kerasllm models: the shared checkpoint
reading and weight mapping (`checkpoint_mapping`, `llama_weights`), which model a
Hugging Face directory holds (`hf_model_type`), one mapping per source format
(`hf_bert`, `hf_gpt`, `gguf_llama`), the one GGUF reader (`gguf_file`) and the GGUF
tokenizer and chat template (`gguf_tokenizer`), and the checkpoints fetched from
registry packages (`minilm`, `smollm2`, `gpt2_vocab`).

Typical use:
    from kerasllm.convert.minilm import minilm_model_dir
    encoder, tokenizer, report = load_hf_bert(minilm_model_dir())
"""
from kerasllm.convert.checkpoint_mapping import ConversionReport
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.gguf_llama import load_gguf_llama
from kerasllm.convert.hf_bert import bert_config_from_hf, load_hf_bert
from kerasllm.convert.hf_gpt import gpt_config_from_hf, load_hf_gpt

__all__ = ["ConversionError", "ConversionReport", "bert_config_from_hf", "gpt_config_from_hf",
           "load_gguf_llama", "load_hf_bert", "load_hf_gpt"]
