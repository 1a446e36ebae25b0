"""save_to_hf: a GPT written as a Hugging Face directory reads back through kerasllm's
importer to the same weights, logits and tokenizer, and its tokenizer.json gives the
same ids in Hugging Face's own `tokenizers`; what cannot be written is one named error
and leaves nothing behind."""
import json
import os

import numpy as np
import pytest
import tokenizers

import kerasllm
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.hf_export import save_to_hf
from kerasllm.models import registry
from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.bert.classifier import BertClassifier
from kerasllm.models.gpt.backbone import GptDecoder
from kerasllm.models.gpt.causal_lm import GptCausalLM
from kerasllm.models.gpt.config import GptConfig
from kerasllm.tokenizers import ByteLevelBpeTokenizer
from kerasllm.tokenizers.byte_vocab import byte_alphabet
from tests.models import text_tasks

MERGES = [("t", "h"), ("th", "e"), ("Ġ", "th"), ("Ġth", "e"), ("a", "n"), ("Ġ", "a")]
VOCABULARY = [*byte_alphabet(), *(a + b for a, b in MERGES), "<|endoftext|>", "<|im_start|>",
              "<|im_end|>"]
TEXTS = ["the answer is 42", "than the  thanes\n\tthe", "naïve café ✓ <|im_end|> x", ""]


def byte_bpe(bos=False):
    return ByteLevelBpeTokenizer(
        VOCABULARY, MERGES, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        pretokenizer="smollm", eos_id=len(VOCABULARY) - 3,
        bos_id=len(VOCABULARY) - 3 if bos else None)


def gpt2_model(tokenizer):
    kerasllm.set_random_seed(3)
    config = GptConfig(num_layers=2, hidden_size=32, num_heads=4, intermediate_size=64,
                       vocab_size=tokenizer.vocab_size, max_sequence_length=64)
    return GptCausalLM(GptDecoder(config), tokenizer=tokenizer).build_for_inputs()


def llama_model():
    """Llama style with grouped queries, an untied head and a SentencePiece vocabulary,
    as train_gpt makes them."""
    model = text_tasks.gpt("llama_tiny")
    config = model.backbone.config.replace(num_heads=4, num_key_value_heads=2,
                                           tie_embeddings=False)
    kerasllm.set_random_seed(4)
    return GptCausalLM(GptDecoder(config), tokenizer=model.tokenizer,
                       chat_template="{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
                       ).build_for_inputs()


def assert_same_model(model, loaded):
    assert loaded.backbone.config == model.backbone.config
    for mine, theirs in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    token_ids = np.array([[1, 5, 9, 2, 7, 3]], np.int32)
    inputs = {"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}
    np.testing.assert_array_equal(model(inputs)["logits"], loaded(inputs)["logits"])


@pytest.mark.parametrize("bos", [False, True])
def test_a_gpt2_with_byte_bpe_reads_back_exactly(tmp_path, bos):
    model = gpt2_model(byte_bpe(bos))
    directory = save_to_hf(model, tmp_path / "hf")
    loaded = GptCausalLM.from_preset(directory)
    assert_same_model(model, loaded)
    assert loaded.tokenizer.settings() == model.tokenizer.settings()
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"]
    assert sorted(os.listdir(directory)) == [
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json"]


@pytest.mark.parametrize("bos", [False, True])
def test_hugging_face_tokenizers_reads_the_same_ids(tmp_path, bos):
    tokenizer = byte_bpe(bos)
    directory = save_to_hf(gpt2_model(tokenizer), tmp_path / "hf")
    theirs = tokenizers.Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
    ours = tokenizer.tokenize(TEXTS).to_list()
    for text, ids in zip(TEXTS, ours):
        # Hugging Face's post-processor adds the bos; kerasllm's pack does.
        assert theirs.encode(text).ids == [tokenizer.bos_id] * bos + ids, text
        assert theirs.decode(ids, skip_special_tokens=False) == text


def test_a_llama_with_sentencepiece_and_a_chat_template_reads_back_exactly(tmp_path):
    model = llama_model()
    directory = save_to_hf(model, tmp_path / "hf")
    loaded = GptCausalLM.from_preset(directory)
    assert_same_model(model, loaded)
    assert loaded.tokenizer.model_proto == model.tokenizer.model_proto
    assert loaded.chat_template == model.chat_template
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert (config["num_key_value_heads"], config["tie_word_embeddings"]) == (2, False)
    tokenizer_config = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "LlamaTokenizer"
    assert (tokenizer_config["bos_token"], tokenizer_config["add_bos_token"]) == ("<s>", True)


def test_float16_weights(tmp_path):
    model = gpt2_model(byte_bpe())
    loaded = GptCausalLM.from_preset(save_to_hf(model, tmp_path / "hf", dtype="f16"))
    for mine, theirs in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(mine.astype(np.float16).astype(np.float32), theirs)


def assert_nothing_written(parent, names=()):
    assert sorted(os.listdir(parent)) == sorted(names)


def test_what_cannot_be_written_is_named_and_nothing_is_left(tmp_path):
    model = gpt2_model(byte_bpe())
    with pytest.raises(ConversionError, match="'q8_0' is not one Hugging Face safetensors "
                                              "holds here; choose f32 or f16"):
        save_to_hf(model, tmp_path / "hf", dtype="q8_0")
    mixed = GptCausalLM(GptDecoder(model.backbone.config.replace(norm="rms_norm")),
                        tokenizer=model.tokenizer).build_for_inputs()
    with pytest.raises(ConversionError, match="neither GPT-2 style nor Llama style.*as GPT-2 "
                                              "norm='rms_norm' \\(needs 'layer_norm'\\)"):
        save_to_hf(mixed, tmp_path / "hf")
    model.enable_lora(2)
    with pytest.raises(ConversionError, match="unmerged LoRA adapters; call merge_lora"):
        save_to_hf(model, tmp_path / "hf")
    assert_nothing_written(tmp_path)


def test_an_existing_directory_is_kept_unless_overwrite(tmp_path):
    model = gpt2_model(byte_bpe())
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "mine.txt").write_text("keep")
    with pytest.raises(ConversionError, match="hf exists; pass overwrite"):
        save_to_hf(model, tmp_path / "hf")
    assert os.listdir(tmp_path / "hf") == ["mine.txt"]
    save_to_hf(model, tmp_path / "hf", overwrite=True)
    assert "mine.txt" not in os.listdir(tmp_path / "hf")
    assert_nothing_written(tmp_path, ["hf"])


def test_a_bert_classifier_reads_back_with_its_head_and_labels(tmp_path):
    classifier = BertClassifier(text_tasks.classifier().backbone, num_classes=3,
                                label_names=["bad", "meh", "good"],
                                tokenizer=text_tasks.wordpiece()).build_for_inputs()
    directory = classifier.save_to_hf(tmp_path / "hf")
    loaded = BertClassifier.from_preset(directory)
    assert (loaded.label_names, loaded.pooling) == (["bad", "meh", "good"], "cls")
    for mine, theirs in zip(classifier.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    texts = ["the king and the queen", "a dog"]
    np.testing.assert_allclose(loaded.classify(texts)["probabilities"],
                               classifier.classify(texts)["probabilities"], atol=1e-6)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "bad", "1": "meh", "2": "good"}
    # The encoder alone, as BertModel.
    encoder = save_to_hf(classifier.backbone, tmp_path / "encoder",
                         tokenizer=classifier.tokenizer)
    assert_same_weights_of(classifier.backbone, BertEncoder.from_preset(encoder))


def assert_same_weights_of(model, other):
    for mine, theirs in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_berts_hugging_face_cannot_hold_are_named(tmp_path):
    mean_pooled = BertClassifier(text_tasks.classifier().backbone, num_classes=2,
                                 pooling="mean", tokenizer=text_tasks.wordpiece())
    with pytest.raises(ConversionError, match="pools by 'mean'; Hugging Face's "
                                              "BertForSequenceClassification"):
        mean_pooled.save_to_hf(tmp_path / "hf")
    pre_ln = BertEncoder(registry.get("bert_tiny").replace(norm_first=True, vocab_size=30))
    with pytest.raises(ConversionError, match="norm_first=True.*post-LN with GELU"):
        save_to_hf(pre_ln, tmp_path / "hf", tokenizer=text_tasks.wordpiece())
    assert_nothing_written(tmp_path)
