"""Pretrained starting points, by one name (a preset: see `presets`): a packaged
checkpoint (`minilm`, `smollm2`), a Hugging Face directory, a GGUF file, a kerasllm
model directory, or a preset directory.

    backbone, tokenizer = load_pretrained("minilm")       # a trainer's --init_checkpoint
"""
import os

from absl import logging

from kerasllm.pretrained.presets import PACKAGED, PresetError, load_preset, packaged_names

MINILM = "minilm"


def pretrained_name(source):
    """A short name for `source`, for run and export directory names: one path
    component, never "." or ".." (`..` is named after the directory it means)."""
    if source in PACKAGED:
        return source
    return os.path.basename(os.path.abspath(source)) or "root"


def load_pretrained(source, family="bert"):
    """(backbone, tokenizer) of the preset `source`, which must hold a trained
    model of `family` with its tokenizer (not a registry name's random weights).

    Raises:
      kerasllm.errors.KerasLLMError (PresetError, CheckpointError, ConversionError,
        DataError): the source cannot be read, converted or used; the message names it.
    """
    preset = load_preset(source)
    if preset.family.name != family:
        raise PresetError(f"{source} holds a {preset.family.name} model; this needs a "
                          f"{family} one ({', '.join(packaged_names(family))}, a Hugging "
                          "Face directory, a kerasllm model_dir or preset)")
    if preset.tokenizer is None:
        raise PresetError(f"{source} is a registry name: a model with random weights and no "
                          "tokenizer; pass a trained one")
    if preset.restore is not None:  # a training run's model_dir
        logging.info("loading the backbone trained in %s", preset.source)
    else:
        logging.info("loaded %s%s", preset.source,
                     f":\n{preset.report}" if preset.report else "")
    return preset.backbone, preset.tokenizer
