"""from_preset from every kind of source, save_to_preset round trips, and the named
errors of a preset that is unknown or of another family."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

import kerasllm
from kerasllm.models import registry
from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.bert.classifier import BertClassifier
from kerasllm.models.bert.pretrainer import BertPretrainer
from kerasllm.models.gpt.backbone import GptDecoder
from kerasllm.models.gpt.causal_lm import GptCausalLM
from kerasllm.models.seq2seq.seq2seq_lm import Seq2SeqLM
from kerasllm.pretrained.model_dir import describe_model_dir
from kerasllm.pretrained.presets import PresetError
from kerasllm.tokenizers.byte_vocab import byte_alphabet
from tests.convert.gpt_tiny_checkpoint import (TINY_GPT2_CONFIG, TINY_LLAMA_CONFIG,
                                               gpt2_tensors, write_gpt_checkpoint)
from tests.convert.gpt_tiny_gguf import gguf_tensors, llama_metadata, write_gguf
from tests.convert.tiny_checkpoint import TINY_VOCAB, write_checkpoint
from tests.models import text_tasks

MERGES = [("t", "h"), ("th", "e"), ("Ġ", "th"), ("Ġth", "e"), ("a", "n")]
VOCABULARY = [*byte_alphabet(), *(a + b for a, b in MERGES), "<|endoftext|>"]


def assert_same_weights(model, other):
    for mine, theirs in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_a_registry_name_is_a_fresh_model_sized_to_the_tokenizer_given():
    model = GptCausalLM.from_preset("llama_tiny")
    assert model.tokenizer is None
    assert model.backbone.config == registry.get("llama_tiny")
    tokenizer = text_tasks.sentencepiece()
    model = GptCausalLM.from_preset("llama_tiny", tokenizer=tokenizer, sequence_length=32)
    assert model.backbone.config.vocab_size == tokenizer.vocab_size
    assert model.sequence_length == 32 and model.tokenizer is tokenizer


def test_a_hugging_face_bert_directory(tmp_path):
    directory = write_checkpoint(tmp_path / "bert")
    classifier = BertClassifier.from_preset(directory, num_classes=3)
    assert classifier.num_classes == 3 and classifier.tokenizer.vocab_size == len(TINY_VOCAB)
    assert_same_weights(classifier.backbone, BertEncoder.from_preset(directory))
    assert classifier.classify("the cat sat")["label"] in ("0", "1", "2")


def test_a_hugging_face_gpt2_directory(tmp_path):
    config = {**TINY_GPT2_CONFIG, "vocab_size": len(VOCABULARY), "n_positions": 64}
    directory = write_gpt_checkpoint(tmp_path / "gpt2", config, gpt2_tensors(config))
    with open(os.path.join(directory, "vocab.json"), "w") as f:
        json.dump({token: i for i, token in enumerate(VOCABULARY)}, f)
    with open(os.path.join(directory, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))
    model = GptCausalLM.from_preset(directory)
    assert model.tokenizer.eos_id == VOCABULARY.index("<|endoftext|>")
    assert len(model.generate("the", max_new_tokens=4, return_details=True)["token_ids"]) == 4


def test_a_gguf_file_with_its_tokenizer(tmp_path):
    config = {**TINY_LLAMA_CONFIG, "vocab_size": len(VOCABULARY)}
    kinds = [3 if token == "<|endoftext|>" else 1 for token in VOCABULARY]
    metadata = {**llama_metadata(config),
                "tokenizer.ggml.model": ("gpt2", "string"),
                "tokenizer.ggml.pre": ("gpt-2", "string"),
                "tokenizer.ggml.tokens": (VOCABULARY, "array"),
                "tokenizer.ggml.token_type": (kinds, "array"),
                "tokenizer.ggml.merges": ([f"{a} {b}" for a, b in MERGES], "array"),
                "tokenizer.ggml.eos_token_id": (len(VOCABULARY) - 1, "uint32")}
    path = write_gguf(tmp_path / "tiny.gguf", gguf_tensors(config), metadata)
    model = GptCausalLM.from_preset(path)
    assert model.backbone.config.num_key_value_heads == 2
    assert model.tokenizer.tokenize(tf.constant(["the"])).to_list() == [[VOCABULARY.index("the")]]


def test_a_model_dir_gives_its_task_heads_to_a_task_of_the_same_kind(tmp_path):
    trained = text_tasks.gpt("gpt_tiny")  # untied: it has an lm_head
    directory = str(tmp_path / "run")
    tf.train.CheckpointManager(tf.train.Checkpoint(task=trained), directory, 1).save(7)
    describe_model_dir(directory, "gpt", trained.backbone.config, trained.tokenizer)
    model = GptCausalLM.from_preset(directory)
    assert_same_weights(model, trained)
    assert model.generate("the king", max_new_tokens=4) == trained.generate("the king",
                                                                            max_new_tokens=4)


@pytest.mark.parametrize("build", [text_tasks.gpt, text_tasks.seq2seq, text_tasks.classifier])
def test_save_to_preset_round_trips_the_task(build, tmp_path):
    model = build()
    directory = model.save_to_preset(str(tmp_path / "preset"))
    loaded = type(model).from_preset(directory)
    assert loaded.task_config() == model.task_config()
    assert loaded.tokenizer.fingerprint() == model.tokenizer.fingerprint()
    assert_same_weights(loaded, model)
    with pytest.raises(PresetError, match="exists"):
        model.save_to_preset(directory)
    assert sorted(os.listdir(tmp_path)) == ["preset"]  # no scratch left behind


def test_a_pretrainer_preset_starts_a_classifier_with_its_encoder(tmp_path):
    kerasllm.set_random_seed(2)
    tokenizer = text_tasks.wordpiece()
    config = registry.get("bert_tiny").replace(vocab_size=tokenizer.vocab_size)
    pretrainer = BertPretrainer(BertEncoder(config), tokenizer=tokenizer).build_for_inputs()
    directory = pretrainer.save_to_preset(str(tmp_path / "pretrained"))
    classifier = BertClassifier.from_preset(directory, num_classes=4)
    assert_same_weights(classifier.backbone, pretrainer.backbone)
    assert classifier.num_classes == 4 and classifier.tokenizer is not None


def test_unknown_names_and_other_families_are_named_errors(tmp_path):
    with pytest.raises(PresetError, match="did you mean llama_tiny"):
        GptCausalLM.from_preset("lama_tiny")
    with pytest.raises(PresetError, match="Known names: .*minilm.*smollm2"):
        GptCausalLM.from_preset("no_such_thing")
    with pytest.raises(PresetError, match="holds a gpt model; BertClassifier needs a bert"):
        BertClassifier.from_preset("llama_tiny", num_classes=2)
    directory = text_tasks.seq2seq().save_to_preset(str(tmp_path / "translator"))
    with pytest.raises(PresetError, match="holds a seq2seq model; GptDecoder needs a gpt"):
        GptDecoder.from_preset(directory)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PresetError, match="is not a preset"):
        Seq2SeqLM.from_preset(str(tmp_path / "empty"))
