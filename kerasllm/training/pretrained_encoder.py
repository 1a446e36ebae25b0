"""A pretraining model_dir as a starting point: its BertConfig, vocab and encoder weights.

pretrain_bert keeps three things in its --model_dir: `config.json` (the
BertConfig), `vocab.txt` and the checkpoints of the whole pretraining task.
`load_pretrained_encoder` rebuilds the encoder from them and restores only its
weights (the MLM/NSP heads and optimizer slots stay in the checkpoint), so a
fine-tuning run can start from a model pretrained with kerasllm.
"""
import json
import os

import tensorflow as tf

from kerasllm.data.errors import DataError
from kerasllm.data.tokenizer import WordPieceTokenizer
from kerasllm.data.vocab import load_vocab, save_vocab
from kerasllm.models.bert import BertEncoder
from kerasllm.models.configs import BertConfig
from kerasllm.training.errors import CheckpointError

CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.txt"


def is_pretraining_model_dir(directory):
    """True when `directory` holds TF checkpoints and the config written beside them."""
    return (os.path.isfile(os.path.join(directory, CONFIG_FILE))
            and tf.train.latest_checkpoint(directory) is not None)


def describe_model_dir(model_dir, config, vocab):
    """Writes config.json (the BertConfig) and vocab.txt next to the checkpoints in
    model_dir, atomically, so load_pretrained_encoder can use them; files already
    there are kept.

    Raises:
      CheckpointError: model_dir already holds a different config (the run that
        wrote it trained another model there; nothing is changed).
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    if os.path.exists(path):
        saved = load_model_config(model_dir)
        changed = [f"{name} {value} -> {getattr(config, name)}"
                   for name, value in saved.to_dict().items() if getattr(config, name) != value]
        if changed:
            raise CheckpointError(
                f"{model_dir} holds a model trained with another config "
                f"({', '.join(changed)}); resume with the settings that wrote it, or "
                "start fresh with a new --model_dir")
    else:
        temporary = path + ".tmp"
        with open(temporary, "w") as f:
            json.dump(config.to_dict(), f, indent=2, sort_keys=True)
        os.replace(temporary, path)
    vocab_path = os.path.join(model_dir, VOCAB_FILE)
    if not os.path.exists(vocab_path):
        save_vocab(vocab, vocab_path)


def load_model_config(model_dir):
    """The BertConfig saved in model_dir; CheckpointError if missing or not one."""
    path = os.path.join(model_dir, CONFIG_FILE)
    try:
        with open(path) as f:
            return BertConfig(**json.load(f))
    except OSError as error:
        raise CheckpointError(f"cannot read {path}: {error.strerror or error}; a kerasllm "
                              "model_dir needs the config.json pretrain_bert writes") from None
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path} is not a kerasllm BertConfig ({error})") from None


def load_pretrained_encoder(model_dir):
    """(BertEncoder with the newest checkpoint's weights, WordPieceTokenizer).

    Raises:
      CheckpointError: no checkpoint, a missing or foreign config.json, or a
        checkpoint whose encoder does not match the config.
      DataError: a missing or malformed vocab.txt, or one whose size differs from
        the config's vocab_size.
    """
    config = load_model_config(model_dir)
    checkpoint_path = tf.train.latest_checkpoint(model_dir)
    if checkpoint_path is None:
        raise CheckpointError(f"no checkpoint in {model_dir}; pass the --model_dir of a "
                              "pretrain_bert run")
    vocab = load_vocab(os.path.join(model_dir, VOCAB_FILE))
    if len(vocab) != config.vocab_size:
        raise DataError(f"{model_dir}/{VOCAB_FILE} has {len(vocab)} tokens but the config's "
                        f"vocab_size is {config.vocab_size}")
    encoder = BertEncoder(config).build_for_inputs()
    # The pretraining checkpoint's object graph is task/encoder/...: a stand-in
    # `task` holding just the encoder restores those weights and nothing else.
    status = None
    try:
        status = tf.train.Checkpoint(task=tf.train.Checkpoint(encoder=encoder)).read(
            checkpoint_path)
        status.assert_existing_objects_matched()
    # As in loop.restore_latest: a wrong shape is a ValueError, a missing variable an
    # AssertionError, a damaged file an IndexError or OpError.
    except (AssertionError, ValueError, IndexError, tf.errors.OpError) as error:
        if status is not None:
            status.expect_partial()
        message = getattr(error, "message", None) or str(error) or type(error).__name__
        raise CheckpointError(
            f"cannot restore the encoder from {checkpoint_path}: it does not match "
            f"{model_dir}/{CONFIG_FILE} or is damaged "
            f"({message.strip().splitlines()[0][:300]})") from None
    status.expect_partial()  # the heads and optimizer slots are deliberately left out
    return encoder, WordPieceTokenizer(vocab)
