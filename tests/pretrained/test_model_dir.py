"""A training run's model_dir reloaded as a backbone: family, weights, tokenizer, the
layout of older kerasllm versions, and named errors."""
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.errors import CheckpointError, DataError
from kerasllm.models import BertEncoder, BertPretrainer, registry
from kerasllm.pretrained import load_pretrained
from kerasllm.pretrained.model_dir import (check_model_dir, describe_model_dir, is_model_dir,
                                           load_backbone, read_model_dir)
from kerasllm.tokenizers import WordPieceTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "king", "##s", "queen"]
CONFIG = registry.get("bert_tiny").replace(vocab_size=len(VOCAB), max_sequence_length=32)
TOKENIZER = WordPieceTokenizer(VOCAB)


def save_pretraining_checkpoint(model_dir, config=CONFIG):
    """A checkpoint laid out as the training loop writes it: task, optimizer, step."""
    task = BertPretrainer(BertEncoder(config))
    task.build_for_inputs()
    checkpoint = tf.train.Checkpoint(task=task, optimizer=keras.optimizers.Adam(),
                                     step=tf.Variable(7, dtype=tf.int64))
    tf.train.CheckpointManager(checkpoint, model_dir, 1, checkpoint_name="ckpt").save(7)
    return task


def assert_same_weights(loaded, expected):
    assert len(loaded) == len(expected)
    for a, b in zip(loaded, expected):
        np.testing.assert_array_equal(a, b)


def test_reloads_the_backbone_weights_and_the_tokenizer(tmp_path):
    model_dir = str(tmp_path)
    assert not is_model_dir(model_dir)
    task = save_pretraining_checkpoint(model_dir)
    describe_model_dir(model_dir, "bert", CONFIG, TOKENIZER)
    assert is_model_dir(model_dir)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["family"] == "bert" and saved["tokenizer"]["kind"] == "wordpiece"

    encoder, tokenizer = load_backbone(model_dir)
    assert isinstance(encoder, BertEncoder) and encoder.config == CONFIG
    assert tokenizer.vocabulary == VOCAB and tokenizer.settings() == TOKENIZER.settings()
    assert_same_weights(encoder.get_weights(), task.backbone.get_weights())
    # A freshly initialised encoder would differ: the weights really came from disk.
    fresh = BertEncoder(CONFIG).build_for_inputs().get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(fresh, task.backbone.get_weights()))
    # The name trainers resolve --init_checkpoint with finds the same.
    assert_same_weights(load_pretrained(model_dir)[0].get_weights(), encoder.get_weights())


def test_a_model_dir_of_an_older_kerasllm_loads_as_bert(tmp_path):
    """Before families: config.json held the BertConfig alone, and the task held its
    encoder as `encoder`."""
    encoder = BertEncoder(CONFIG).build_for_inputs()
    stand_in_task = tf.train.Checkpoint(encoder=encoder)
    tf.train.CheckpointManager(tf.train.Checkpoint(task=stand_in_task), str(tmp_path), 1,
                               checkpoint_name="ckpt").save(3)
    (tmp_path / "config.json").write_text(json.dumps(CONFIG.to_dict()))
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    assert read_model_dir(str(tmp_path)).family.name == "bert"
    loaded, tokenizer = load_backbone(str(tmp_path))
    assert loaded.config == CONFIG and tokenizer.vocabulary == VOCAB
    assert_same_weights(loaded.get_weights(), encoder.get_weights())


def test_existing_tokenizer_files_are_kept(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    describe_model_dir(str(tmp_path), "bert", CONFIG,
                       WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "x"]))
    assert (tmp_path / "vocab.txt").read_text().split() == VOCAB
    assert json.loads((tmp_path / "config.json").read_text())["config"]["vocab_size"] == \
        len(VOCAB)


def test_missing_checkpoint_is_named(tmp_path):
    describe_model_dir(str(tmp_path), "bert", CONFIG, TOKENIZER)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_backbone(str(tmp_path))


def test_missing_config_is_named(tmp_path):
    save_pretraining_checkpoint(str(tmp_path))
    with pytest.raises(CheckpointError, match="config.json"):
        load_backbone(str(tmp_path))


@pytest.mark.parametrize("content", [{"n_layer": 12}, {"family": "bert", "config": {}},
                                     [1, 2]])
def test_foreign_config_is_named(tmp_path, content):
    save_pretraining_checkpoint(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(content))
    with pytest.raises(CheckpointError, match="config.json .*(not a kerasllm|holds a JSON)"):
        load_backbone(str(tmp_path))


def test_unknown_family_is_named(tmp_path):
    save_pretraining_checkpoint(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps(
        {"family": "rnn", "config": {}, "tokenizer": {"kind": "wordpiece"}}))
    with pytest.raises(CheckpointError, match="unknown model family 'rnn'"):
        load_backbone(str(tmp_path))


def test_vocab_of_another_size_is_named(tmp_path):
    save_pretraining_checkpoint(str(tmp_path))
    describe_model_dir(str(tmp_path), "bert", CONFIG, WordPieceTokenizer(VOCAB[:-1]))
    with pytest.raises(DataError, match="has 8 tokens but the config's vocab_size is 9"):
        load_backbone(str(tmp_path))


@pytest.mark.parametrize("changes", [{"num_layers": 3}, {"hidden_size": 64}])
def test_config_that_does_not_match_the_checkpoint_is_named(tmp_path, changes):
    save_pretraining_checkpoint(str(tmp_path))
    describe_model_dir(str(tmp_path), "bert", CONFIG.replace(**changes), TOKENIZER)
    with pytest.raises(CheckpointError, match="does not match .*config.json or is damaged"):
        load_backbone(str(tmp_path))


def test_another_config_in_the_same_model_dir_is_refused(tmp_path):
    describe_model_dir(str(tmp_path), "bert", CONFIG, TOKENIZER)
    before = (tmp_path / "config.json").read_text()
    with pytest.raises(CheckpointError, match="another config .num_layers 2 -> 4"):
        describe_model_dir(str(tmp_path), "bert", CONFIG.replace(num_layers=4), TOKENIZER)
    assert (tmp_path / "config.json").read_text() == before


def test_damaged_checkpoint_is_named(tmp_path):
    save_pretraining_checkpoint(str(tmp_path))
    describe_model_dir(str(tmp_path), "bert", CONFIG, TOKENIZER)
    data_file = next(p for p in os.listdir(tmp_path) if ".data-" in p)
    (tmp_path / data_file).write_bytes(b"\0" * 100)
    with pytest.raises(CheckpointError, match="does not match .*config.json or is damaged"):
        load_backbone(str(tmp_path))


GPT_CONFIG = registry.get("gpt_tiny").replace(vocab_size=len(VOCAB))


def test_a_model_dir_of_another_family_is_refused_in_one_line(tmp_path):
    """A GPT's config has fields a BERT's lacks (num_key_value_heads): the family is
    compared first."""
    describe_model_dir(str(tmp_path), "gpt", GPT_CONFIG, TOKENIZER)
    before = (tmp_path / "config.json").read_text()
    with pytest.raises(CheckpointError, match=f"^{tmp_path} holds a kerasllm gpt model, not a "
                                              "bert one; start fresh with a new --model_dir$"):
        describe_model_dir(str(tmp_path), "bert", CONFIG, TOKENIZER)
    assert (tmp_path / "config.json").read_text() == before


def test_check_model_dir_names_what_the_directory_holds(tmp_path):
    needs = "pretrain_bert trains bert models"
    check_model_dir(str(tmp_path / "new"), "bert", needs)  # nothing there: a new run
    describe_model_dir(str(tmp_path), "gpt", GPT_CONFIG, TOKENIZER)
    check_model_dir(str(tmp_path), "gpt", needs)
    with pytest.raises(CheckpointError,
                       match=f"^{tmp_path} holds a kerasllm gpt model; {needs}$"):
        check_model_dir(str(tmp_path), "bert", needs)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "vocab_size": 9}))
    with pytest.raises(CheckpointError, match=f"^{tmp_path}/config.json is a Hugging Face "
                                              f"llama config, not a kerasllm model_dir's; "
                                              f"{needs}$"):
        check_model_dir(str(tmp_path), "bert", needs)
