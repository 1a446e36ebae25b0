"""A pretraining model_dir reloaded as an encoder: weights, vocab and named errors."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.data.errors import DataError
from kerasllm.models import BertEncoder, BertPretrainer, configs
from kerasllm.training.errors import CheckpointError
from kerasllm.training.pretrained_encoder import (describe_model_dir, is_pretraining_model_dir,
                                                  load_pretrained_encoder)

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "king", "##s", "queen"]
CONFIG = configs.get("bert_tiny").replace(vocab_size=len(VOCAB), max_sequence_length=32)


def save_pretraining_checkpoint(model_dir, config=CONFIG):
    """A checkpoint laid out as the training loop writes it: task, optimizer, step."""
    task = BertPretrainer(BertEncoder(config))
    task.build_for_inputs()
    checkpoint = tf.train.Checkpoint(task=task, optimizer=keras.optimizers.Adam(),
                                     step=tf.Variable(7, dtype=tf.int64))
    tf.train.CheckpointManager(checkpoint, model_dir, 1, checkpoint_name="ckpt").save(7)
    return task


def test_reloads_the_encoder_weights_and_the_vocab(tmp_path):
    model_dir = str(tmp_path)
    assert not is_pretraining_model_dir(model_dir)
    task = save_pretraining_checkpoint(model_dir)
    describe_model_dir(model_dir, CONFIG, VOCAB)
    assert is_pretraining_model_dir(model_dir)

    encoder, tokenizer = load_pretrained_encoder(model_dir)
    assert encoder.config == CONFIG and tokenizer.vocabulary == VOCAB
    expected = task.encoder.get_weights()
    loaded = encoder.get_weights()
    assert len(loaded) == len(expected) == len(task.encoder.weights)
    for a, b in zip(loaded, expected):
        np.testing.assert_array_equal(a, b)
    # A freshly initialised encoder would differ: the weights really came from disk.
    fresh = BertEncoder(CONFIG).build_for_inputs().get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(fresh, expected))


def test_an_existing_vocab_is_kept(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    describe_model_dir(str(tmp_path), CONFIG, ["[PAD]", "other"])
    assert (tmp_path / "vocab.txt").read_text().split() == VOCAB
    assert json.loads((tmp_path / "config.json").read_text())["vocab_size"] == len(VOCAB)


def test_missing_checkpoint_is_named(tmp_path):
    describe_model_dir(str(tmp_path), CONFIG, VOCAB)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_pretrained_encoder(str(tmp_path))


def test_missing_config_is_named(tmp_path):
    save_pretraining_checkpoint(str(tmp_path))
    with pytest.raises(CheckpointError, match="config.json"):
        load_pretrained_encoder(str(tmp_path))


def test_foreign_config_is_named(tmp_path):
    save_pretraining_checkpoint(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"n_layer": 12}))
    with pytest.raises(CheckpointError, match="not a kerasllm BertConfig"):
        load_pretrained_encoder(str(tmp_path))


def test_vocab_of_another_size_is_named(tmp_path):
    save_pretraining_checkpoint(str(tmp_path))
    describe_model_dir(str(tmp_path), CONFIG, VOCAB[:-1])
    with pytest.raises(DataError, match="8 tokens but the config's vocab_size is 9"):
        load_pretrained_encoder(str(tmp_path))


@pytest.mark.parametrize("changes", [{"num_layers": 3}, {"hidden_size": 64}])
def test_config_that_does_not_match_the_checkpoint_is_named(tmp_path, changes):
    save_pretraining_checkpoint(str(tmp_path))
    describe_model_dir(str(tmp_path), CONFIG.replace(**changes), VOCAB)
    with pytest.raises(CheckpointError, match="does not match .*config.json or is damaged"):
        load_pretrained_encoder(str(tmp_path))


def test_another_config_in_the_same_model_dir_is_refused(tmp_path):
    describe_model_dir(str(tmp_path), CONFIG, VOCAB)
    before = (tmp_path / "config.json").read_text()
    with pytest.raises(CheckpointError, match="another config .num_layers 2 -> 4"):
        describe_model_dir(str(tmp_path), CONFIG.replace(num_layers=4), VOCAB)
    assert (tmp_path / "config.json").read_text() == before


def test_damaged_checkpoint_is_named(tmp_path):
    save_pretraining_checkpoint(str(tmp_path))
    describe_model_dir(str(tmp_path), CONFIG, VOCAB)
    data_file = next(p for p in os.listdir(tmp_path) if ".data-" in p)
    (tmp_path / data_file).write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match="does not match .*config.json or is damaged"):
        load_pretrained_encoder(str(tmp_path))
