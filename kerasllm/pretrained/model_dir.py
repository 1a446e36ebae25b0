"""A model directory: the checkpoints a trainer writes to its --model_dir, and beside
them what it takes to rebuild the backbone without the trainer's flags.

    config.json     {"family": "bert", "config": {...}, "tokenizer": {"kind": ...}}
    vocab.txt, ...  the tokenizer's own files (kerasllm.tokenizers.Tokenizer.save)
    ckpt-N.*        the whole task: backbone, heads, optimizer slots, step

`load_backbone` rebuilds the family's backbone from config.json, restores only
its weights from the newest checkpoint (the heads and optimizer slots stay
there), and reloads the tokenizer, so a fine-tuning run can start from a model
trained with kerasllm. Directories written before config.json named a family
hold a bare BertConfig and a vocab.txt; they load as BERT with WordPiece.
"""
import dataclasses
import json
import os

import tensorflow as tf

from kerasllm.atomic_files import write_atomically
from kerasllm.errors import CheckpointError, DataError
from kerasllm.models import registry
from kerasllm.tokenizers import load_tokenizer
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from kerasllm.training.errors import first_line

CONFIG_FILE = "config.json"
# What a config.json without a family (an older kerasllm's) describes.
_LEGACY_FAMILY = "bert"
_LEGACY_TOKENIZER = {"kind": WordPieceTokenizer.kind}


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """What config.json records: the family, its config and the tokenizer settings."""

    family: registry.Family
    config: object
    tokenizer: dict

    def to_json(self):
        return {"family": self.family.name, "config": self.config.to_dict(),
                "tokenizer": self.tokenizer}


def is_model_dir(directory):
    """True when `directory` holds TF checkpoints and the config.json written beside them."""
    return (os.path.isfile(os.path.join(directory, CONFIG_FILE))
            and tf.train.latest_checkpoint(directory) is not None)


def read_model_dir(model_dir):
    """The ModelDescription in model_dir/config.json.

    Raises:
      CheckpointError: config.json is missing, not JSON, or not a kerasllm config.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    try:
        with open(path) as f:
            saved = json.load(f)
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}; a kerasllm "
                              "model_dir needs the config.json its trainer writes") from None
    except ValueError as error:
        raise CheckpointError(f"{path} is not JSON ({error})") from None
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path} holds a JSON {type(saved).__name__}, not a kerasllm "
                              "model config")
    if "family" not in saved and "model_type" in saved:
        raise CheckpointError(f"{path} is a Hugging Face {saved['model_type']} config, not "
                              "a kerasllm model_dir's")
    if "family" not in saved:
        saved = {"family": _LEGACY_FAMILY, "config": saved, "tokenizer": _LEGACY_TOKENIZER}
    try:
        family = registry.family(saved["family"])
        return ModelDescription(family, family.config_class(**saved["config"]),
                                dict(saved["tokenizer"]))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} is not a kerasllm model config ({error})") from None


def check_model_dir(directory, family_name, needs):
    """Raises CheckpointError, in one line naming what `directory` holds and then
    `needs` (what the command needs instead), when its config.json describes a
    model of another family than `family_name` or is not a kerasllm model config.
    A directory without config.json passes: it is new, or no model_dir at all.
    Cheap: a command checks this before any slow work."""
    if not os.path.exists(os.path.join(directory, CONFIG_FILE)):
        return
    try:
        held = read_model_dir(directory).family.name
    except CheckpointError as error:
        raise CheckpointError(f"{error}; {needs}") from None
    if held != family_name:
        raise CheckpointError(f"{directory} holds a kerasllm {held} model; {needs}")


def describe_model_dir(model_dir, family_name, config, tokenizer):
    """Writes config.json and the tokenizer's files next to the checkpoints in
    model_dir, each atomically; what is already there is kept.

    Raises:
      CheckpointError: model_dir already describes a different model (the run
        that wrote it trained another one there; nothing is changed).
    """
    description = ModelDescription(registry.family(family_name), config, tokenizer.settings())
    path = os.path.join(model_dir, CONFIG_FILE)
    if os.path.exists(path):
        saved = read_model_dir(model_dir)
        if saved.family != description.family:
            raise CheckpointError(f"{model_dir} holds a kerasllm {saved.family.name} model, "
                                  f"not a {family_name} one; start fresh with a new "
                                  "--model_dir")
        new = config.to_dict()
        changed = [f"{name} {value} -> {new.get(name)}"
                   for name, value in saved.config.to_dict().items() if new.get(name) != value]
        if changed:
            raise CheckpointError(
                f"{model_dir} holds a model trained with another config "
                f"({', '.join(changed)}); resume with the settings that wrote it, or "
                "start fresh with a new --model_dir")
    else:
        write_atomically(path, json.dumps(description.to_json(), indent=2, sort_keys=True))
    if not all(os.path.exists(os.path.join(model_dir, name)) for name in tokenizer.files):
        tokenizer.save(model_dir)


def _backbone_attribute(checkpoint_path):
    """The name under which the checkpoint's task holds its backbone: `backbone`, or
    `encoder` in checkpoints of an older kerasllm."""
    names = [name for name, _ in tf.train.list_variables(checkpoint_path)]
    return "encoder" if any(name.startswith("task/encoder/") for name in names) else "backbone"


def load_backbone(model_dir):
    """(backbone with the newest checkpoint's weights, tokenizer) of a model_dir.

    Raises:
      CheckpointError: no checkpoint, a missing or foreign config.json, or a
        checkpoint whose backbone does not match the config.
      DataError: missing or malformed tokenizer files, or a vocabulary whose size
        differs from the config's vocab_size.
    """
    description = read_model_dir(model_dir)
    checkpoint_path = tf.train.latest_checkpoint(model_dir)
    if checkpoint_path is None:
        raise CheckpointError(f"no checkpoint in {model_dir}; pass the --model_dir of a "
                              "kerasllm training run")
    tokenizer = load_tokenizer(model_dir, description.tokenizer)
    if tokenizer.vocab_size != description.config.vocab_size:
        raise DataError(f"the tokenizer in {model_dir} has {tokenizer.vocab_size} tokens but "
                        f"the config's vocab_size is {description.config.vocab_size}")
    backbone = description.family.backbone_class(description.config).build_for_inputs()
    # The checkpoint's object graph is task/<backbone>/...: a stand-in `task` holding
    # just the backbone restores those weights and nothing else.
    status = None
    try:
        stand_in = tf.train.Checkpoint(**{_backbone_attribute(checkpoint_path): backbone})
        status = tf.train.Checkpoint(task=stand_in).read(checkpoint_path)
        status.assert_existing_objects_matched()
    # As in training.checkpoints.restore_latest: a wrong shape is a ValueError, a
    # missing variable an AssertionError, a damaged file an IndexError or OpError.
    except (AssertionError, ValueError, IndexError, tf.errors.OpError) as error:
        if status is not None:
            status.expect_partial()
        raise CheckpointError(
            f"cannot restore the backbone from {checkpoint_path}: it does not match "
            f"{model_dir}/{CONFIG_FILE} or is damaged ({first_line(error)})") from None
    status.expect_partial()  # the heads and optimizer slots are deliberately left out
    return backbone, tokenizer
