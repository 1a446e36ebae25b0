"""Which model a Hugging Face checkpoint directory holds (its config.json's model_type),
and which of them kerasllm converts: "bert" to a BertEncoder (hf_bert), "gpt2" and
"llama" to a GptCausalLM (hf_gpt). Every loader checks it first, so a directory of
another model is named for what it is rather than for the files its loader lacks.
"""
import os

from kerasllm.convert.checkpoint_mapping import read_json
from kerasllm.convert.errors import ConversionError

CONFIG_FILE = "config.json"
# model_type -> the loader that converts it.
LOADERS = {"bert": "load_hf_bert", "gpt2": "load_hf_gpt", "llama": "load_hf_gpt"}


def model_type_of(hf_config):
    """The model_type of a config.json's dict, or None; the configs of early BERTs
    name only their architectures ("BertModel", ...) and read as "bert"."""
    model_type = hf_config.get("model_type")
    architectures = hf_config.get("architectures") or []
    if model_type is None and any(str(name).startswith("Bert") for name in architectures):
        return "bert"
    return model_type


def hf_model_type(directory):
    """model_type_of the directory's config.json; None when it has none.

    Raises:
      ConversionError: config.json is not a JSON object.
    """
    path = os.path.join(directory, CONFIG_FILE)
    return model_type_of(read_json(path)) if os.path.isfile(path) else None


def supported_model_type(directory):
    """The model_type (a key of LOADERS) of the directory's config.json, or None when
    it has no config.json or names no model_type.

    Raises:
      ConversionError: config.json is not a JSON object, or names a model kerasllm
        does not convert.
    """
    model_type = hf_model_type(directory)
    if model_type is not None and model_type not in LOADERS:
        raise ConversionError(
            f"{directory} holds a {model_type!r} model ({CONFIG_FILE} model_type): "
            f"{model_type} is not supported; supported: {', '.join(LOADERS)}.")
    return model_type


def check_model_type(directory, loader):
    """Raises ConversionError when the directory's config.json names a model_type
    that `loader` ("load_hf_bert" or "load_hf_gpt") does not convert: one kerasllm
    does not support at all, or one of the other loader's. A directory without a
    config.json or a model_type is left for the loader to name what it lacks."""
    model_type = supported_model_type(directory) if os.path.isdir(directory) else None
    if model_type is not None and LOADERS[model_type] != loader:
        raise ConversionError(f"{directory} holds a {model_type} model ({CONFIG_FILE} "
                              f"model_type); convert it with {LOADERS[model_type]}, not "
                              f"{loader}.")
