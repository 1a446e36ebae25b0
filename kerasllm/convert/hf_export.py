"""Writes a kerasllm model as a Hugging Face checkpoint directory, the format vLLM,
SGLang, transformers and llama.cpp's converter read:

    config.json               GPT2LMHeadModel or LlamaForCausalLM (see hf_gpt.hf_config_of);
                              BertModel or BertForSequenceClassification (hf_bert)
    model.safetensors         the weights, float32 or float16, named as transformers does
    generation_config.json    a GPT's bos / eos / pad ids
    tokenizer files           byte-level BPE: tokenizer.json (read by Hugging Face's
                              `tokenizers`); SentencePiece: tokenizer.model; WordPiece:
                              vocab.txt
    tokenizer_config.json     special tokens, whether a bos is added, the chat template;
                              a BERT's casing

The directory is written beside its destination, read back by kerasllm's own
importer (every tensor checked against the config), then renamed into place: a
reader never sees half of one.
"""
import json
import os

import numpy as np
from safetensors.numpy import save_file

from kerasllm.atomic_files import atomic_output
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.hf_bert import hf_bert_config_of, hf_bert_tensors, load_hf_bert
from kerasllm.convert.hf_gpt import WEIGHTS_FILE, hf_config_of, hf_gpt_tensors, load_hf_gpt
from kerasllm.convert.hf_model_type import CONFIG_FILE
from kerasllm.tokenizers import (ByteLevelBpeTokenizer, SentencePieceTokenizer,
                                 WordPieceTokenizer)
from kerasllm.tokenizers.byte_hf_json import (TOKENIZER_CONFIG_FILE, TOKENIZER_FILE,
                                              tokenizer_json)

SENTENCEPIECE_FILE = "tokenizer.model"
GENERATION_CONFIG_FILE = "generation_config.json"
# Weight dtypes of model.safetensors; the safetensors NumPy API has no bfloat16.
DTYPES = {"f32": np.float32, "f16": np.float16}


def _write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


def _token_of(tokenizer):
    """id -> token text, for the few ids tokenizer_config.json names."""
    if isinstance(tokenizer, ByteLevelBpeTokenizer):
        return lambda index: tokenizer.vocabulary[index]
    names = {index: token for token, index in tokenizer.special_ids().items()}
    return names.get


def special_token_ids(tokenizer):
    """{"bos_token_id", "eos_token_id", "pad_token_id"} of a GPT's tokenizer (None
    where it has none), as config.json and generation_config.json state them."""
    return {"bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
            "pad_token_id": tokenizer.pad_id}


def write_gpt_tokenizer(tokenizer, directory, chat_template=None, max_length=None):
    """The tokenizer files of a GPT (see the module docstring) into `directory`.

    Raises:
      ConversionError: a tokenizer of a kind Hugging Face GPTs do not use.
    """
    token = _token_of(tokenizer)
    config = {"bos_token": token(tokenizer.bos_id) if tokenizer.bos_id is not None else None,
              "eos_token": token(tokenizer.eos_id) if tokenizer.eos_id is not None else None,
              "pad_token": token(tokenizer.pad_id),
              "add_bos_token": tokenizer.bos_id is not None, "add_eos_token": False,
              "clean_up_tokenization_spaces": False}
    if isinstance(tokenizer, ByteLevelBpeTokenizer):
        _write_json(os.path.join(directory, TOKENIZER_FILE), tokenizer_json(tokenizer))
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
    elif isinstance(tokenizer, SentencePieceTokenizer):
        with open(os.path.join(directory, SENTENCEPIECE_FILE), "wb") as f:
            f.write(tokenizer.model_proto)
        # legacy=False and add_prefix_space=False: transformers then tokenizes as the
        # model proto says, without adding a leading space of its own.
        config.update(tokenizer_class="LlamaTokenizer", unk_token=token(tokenizer.unk_id),
                      legacy=False, add_prefix_space=False)
    else:
        raise ConversionError(f"a {tokenizer.kind} tokenizer cannot go with a Hugging Face "
                              "GPT; byte-level BPE and SentencePiece can")
    if max_length:
        config["model_max_length"] = max_length
    if chat_template:
        config["chat_template"] = chat_template
    _write_json(os.path.join(directory, TOKENIZER_CONFIG_FILE), config)


def _chat_template_of(model):
    renderer = model.chat_renderer() if model.tokenizer is not None else None
    return renderer.source if renderer is not None else None


def write_bert_tokenizer(tokenizer, directory, max_length):
    """vocab.txt and the tokenizer_config.json of Hugging Face's BertTokenizer."""
    if not isinstance(tokenizer, WordPieceTokenizer):
        raise ConversionError(f"a {tokenizer.kind} tokenizer cannot go with a Hugging Face "
                              "BERT; WordPiece can")
    tokenizer.save(directory)
    settings = tokenizer.settings()
    _write_json(os.path.join(directory, TOKENIZER_CONFIG_FILE), {
        "tokenizer_class": "BertTokenizer", "do_lower_case": settings["lowercase"],
        "strip_accents": settings["strip_accents"], "tokenize_chinese_chars": True,
        "model_max_length": max_length, "unk_token": "[UNK]", "sep_token": "[SEP]",
        "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]"})


def _gpt_directory(model, tokenizer):
    """(config.json dict, tensors, writer of the other files, reader) of a GPT."""
    config = model.backbone.config

    def write_rest(directory):
        _write_json(os.path.join(directory, GENERATION_CONFIG_FILE),
                    {key: value for key, value in special_token_ids(tokenizer).items()
                     if value is not None})
        write_gpt_tokenizer(tokenizer, directory, _chat_template_of(model),
                            config.max_sequence_length)

    return (hf_config_of(config, special_token_ids(tokenizer)), hf_gpt_tensors(model),
            write_rest, load_hf_gpt)


def _bert_directory(model, tokenizer):
    """(config.json dict, tensors, writer of the other files, reader) of a BERT
    encoder or classifier."""
    from kerasllm.models.bert.classifier import BertClassifier
    encoder = getattr(model, "backbone", model)
    classifier = model if isinstance(model, BertClassifier) else None
    return (hf_bert_config_of(encoder.config, classifier),
            hf_bert_tensors(encoder, classifier),
            lambda directory: write_bert_tokenizer(tokenizer, directory,
                                                   encoder.config.max_sequence_length),
            load_hf_bert)


def save_to_hf(model, directory, dtype="f32", overwrite=False, tokenizer=None):
    """Writes `model` as a Hugging Face checkpoint directory; returns its path.

    Args:
      model: a GptCausalLM of GPT-2 or Llama style, a BertClassifier ([CLS] pooling)
        or a BertEncoder; LoRA adapters must be merged first (merge_lora()).
      directory: the new directory.
      dtype: "f32" or "f16", the weights' dtype in model.safetensors.
      overwrite: replace an existing `directory`.
      tokenizer: the model's tokenizer (default: the task's own).

    Raises:
      ConversionError: an architecture or tokenizer Hugging Face's classes do not
        hold, an unknown dtype, unmerged adapters, or `directory` exists.
    """
    from kerasllm.models.bert.backbone import BertEncoder  # models import convert
    from kerasllm.models.bert.classifier import BertClassifier
    from kerasllm.models.gpt.causal_lm import GptCausalLM
    from kerasllm.models.lora import lora_layers
    if isinstance(model, GptCausalLM):
        layout = _gpt_directory
    elif isinstance(model, (BertClassifier, BertEncoder)):
        layout = _bert_directory
    else:
        raise ConversionError(f"a {type(model).__name__} cannot be written as a Hugging "
                              "Face model; pass a GptCausalLM, a BertClassifier or a "
                              "BertEncoder")
    if dtype not in DTYPES:
        raise ConversionError(f"dtype {dtype!r} is not one Hugging Face safetensors holds "
                              f"here; choose {' or '.join(DTYPES)} (q8_0 is for GGUF)")
    backbone = getattr(model, "backbone", model)
    if lora_layers(backbone):
        raise ConversionError("the model has unmerged LoRA adapters; call merge_lora() "
                              "first (Hugging Face's classes hold plain weights)")
    if tokenizer is None:
        if not hasattr(model, "needs_tokenizer"):
            raise ConversionError("a backbone carries no tokenizer; pass tokenizer=")
        tokenizer = model.needs_tokenizer("save_to_hf")
    hf_config, tensors, write_rest, read_back = layout(model, tokenizer)
    hf_config["torch_dtype"] = {"f32": "float32", "f16": "float16"}[dtype]
    try:
        with atomic_output(directory, overwrite=overwrite) as scratch:
            os.makedirs(scratch)
            save_file({name: value.astype(DTYPES[dtype]) for name, value in tensors.items()},
                      os.path.join(scratch, WEIGHTS_FILE), metadata={"format": "pt"})
            _write_json(os.path.join(scratch, CONFIG_FILE), hf_config)
            write_rest(scratch)
            read_back(scratch)  # every tensor and config.json, as a reader sees them
    except FileExistsError as error:
        raise ConversionError(f"{error} (--overwrite)") from None
    return os.path.abspath(directory)
