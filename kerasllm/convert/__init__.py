"""Converters from published checkpoints to kerasllm models.

Typical use:
    from kerasllm.data.minilm import minilm_model_dir
    encoder, tokenizer, report = load_hf_bert(minilm_model_dir())
"""
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.hf_bert import ConversionReport, bert_config_from_hf, load_hf_bert

__all__ = ["ConversionError", "ConversionReport", "bert_config_from_hf", "load_hf_bert"]
