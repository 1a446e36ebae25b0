"""The tasks' Python methods on raw text equal what their exports serve (they run the
same functions, decoding compiled with XLA in-process), and take bad input as the
signatures do: a named error or a defined result."""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

import kerasllm
from kerasllm.errors import DataError
from kerasllm.models import registry
from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.bert.pretrainer import BertPretrainer
from kerasllm.models.bert.span_qa import BertSpanQA
from kerasllm.models.bert.token_classifier import BertTokenClassifier
from kerasllm.tokenizers import train_sentencepiece
from kerasllm.training.seeding import set_global_seed
from tests.models import text_tasks

PROMPTS = ["the king and", "a dog", "their castle with the queen of a land"]


@pytest.fixture(scope="module")
def gpt_export(tmp_path_factory):
    """(model, its export loaded with kerasllm.export.load), the export checked as TF
    Serving loads it."""
    model = text_tasks.gpt()
    root = str(tmp_path_factory.mktemp("exports") / "gpt")
    model.export(root, max_new_tokens=8)
    return model, kerasllm.export.load(root)


def test_generate_greedy_and_seeded_sampling_equal_the_export(gpt_export):
    model, served = gpt_export
    rows = len(PROMPTS)
    settings = {"temperature": [0.0, 1.0, 0.7], "top_k": [0, 0, 20], "top_p": [1.0, 0.9, 1.0],
                "seed": [0, 3, 4], "stop": ["", "", "the"]}
    mine = model.generate(PROMPTS, max_new_tokens=8, return_details=True, **settings)
    theirs = served.generate_with_options(prompt=PROMPTS, max_new_tokens=[8] * rows,
                                          **settings)
    assert mine["text"] == theirs["text"]
    np.testing.assert_array_equal(mine["token_ids"], theirs["token_ids"])
    assert mine["finish_reason"] == theirs["finish_reason"]
    assert model.generate(PROMPTS[0], max_new_tokens=8) == served.generate(
        prompt=PROMPTS[0])["text"]
    # The same settings through the uncompiled graph: XLA changes nothing.
    assert model.generate(PROMPTS, max_new_tokens=8, jit_compile=False,
                          **settings) == mine["text"]


def test_beam_search_and_score_equal_the_export(gpt_export):
    model, served = gpt_export
    mine = model.generate(PROMPTS, max_new_tokens=8, num_beams=4, length_penalty=0.6,
                          return_details=True)
    theirs = served.generate_beam(prompt=PROMPTS, length_penalty=[0.6] * len(PROMPTS))
    assert mine["texts"] == theirs["texts"]
    np.testing.assert_allclose(mine["scores"], theirs["scores"], rtol=1e-5)
    np.testing.assert_allclose(model.score(PROMPTS)["log_probability"],
                               served.score(text=PROMPTS)["log_probability"], rtol=1e-5)


def test_translate_and_score_equal_the_export(tmp_path):
    model = text_tasks.seq2seq()
    served = kerasllm.export.load(model.export(str(tmp_path / "s2s"), check=False))
    mine = model.translate(PROMPTS, beam_size=[1, 3, 4], length_penalty=0.6,
                           return_details=True)
    theirs = served.translate_with_options(text=PROMPTS, beam_size=[1, 3, 4],
                                           length_penalty=[0.6] * 3, max_length=[0] * 3)
    assert mine["translations"] == theirs["translations"]
    np.testing.assert_allclose(mine["scores"], theirs["scores"], rtol=1e-5)
    assert model.translate(PROMPTS[1]) == served.translate(text=PROMPTS[1])["translation"]
    np.testing.assert_allclose(model.score(PROMPTS, PROMPTS)["log_probability"],
                               served.score(source=PROMPTS, target=PROMPTS)["log_probability"],
                               rtol=1e-5)


def test_classify_and_embed_equal_the_export(tmp_path):
    classifier = text_tasks.classifier()
    served = kerasllm.export.load(classifier.export(str(tmp_path / "classifier"),
                                                    check=False))
    mine = classifier.classify(PROMPTS)
    theirs = served.classify(text=PROMPTS)
    assert mine["label"] == theirs["label"] and set(mine["label"]) <= {"no", "yes"}
    np.testing.assert_allclose(mine["probabilities"], theirs["probabilities"], rtol=1e-5)
    assert classifier.predict("the king")["label"] == theirs["label"][0]

    tokenizer = text_tasks.wordpiece()
    pretrainer = BertPretrainer(BertEncoder(registry.get("bert_tiny").replace(
        vocab_size=tokenizer.vocab_size)), tokenizer=tokenizer).build_for_inputs()
    served = kerasllm.export.load(pretrainer.export(str(tmp_path / "encoder"), check=False))
    np.testing.assert_allclose(pretrainer.embed(PROMPTS),
                               served.serving_default(text=PROMPTS)["sentence_embedding"],
                               rtol=1e-5, atol=1e-6)
    filled = pretrainer.fill_mask("the [MASK] sat", top_k=3)
    assert len(filled["top_tokens"][0]) == 3


def test_bad_input_is_a_named_error_or_a_defined_result(gpt_export):
    model, _ = gpt_export
    assert model.generate([]) == []
    with pytest.raises(DataError, match=r"prompts\[1\] is not UTF-8"):
        model.generate(["fine", b"\xff\xfe"])
    with pytest.raises(DataError, match="prompts must be a string or a list of strings"):
        model.generate([1, 2])
    with pytest.raises(DataError, match="temperature has 2 values for 3 texts"):
        model.generate(PROMPTS, temperature=[0.0, 1.0], max_new_tokens=8)
    with pytest.raises(DataError, match="max_new_tokens=64 must be in"):
        model.generate("x", max_new_tokens=64)
    with pytest.raises(DataError, match="no ChatML tokens"):
        model.chat("hello")
    # Out-of-range settings are clamped as the signatures clamp them.
    assert isinstance(model.generate("x", max_new_tokens=8, top_p=7.0, top_k=-3), str)
    with pytest.raises(DataError, match="2 sources but 1 targets"):
        text_tasks.seq2seq().score(["a", "b"], ["c"])


def test_seeding_keeps_tokenizers_built_before_alive():
    tokenizer = train_sentencepiece(list(text_tasks.lines(count=64, seed=5)), vocab_size=290)
    before = tokenizer.tokenize(tf.constant(["the king"])).to_list()
    set_global_seed(12345)  # what kerasllm.training.loop.train does first
    kerasllm.set_random_seed(777)
    assert tokenizer.tokenize(tf.constant(["the king"])).to_list() == before


ASK_SMOLLM2 = """
from kerasllm.models import GptCausalLM
print("ANSWER:", GptCausalLM.from_preset("smollm2").chat("What is the capital of France?"))
"""


@pytest.mark.slow
def test_smollm2_from_its_preset_answers_a_chat_question_in_a_fresh_process():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", ASK_SMOLLM2], cwd=root,
                            capture_output=True, text=True, timeout=900)
    answers = [line for line in result.stdout.splitlines() if line.startswith("ANSWER:")]
    assert answers and "Paris" in answers[0], result.stderr[-3000:]


def test_tag_and_answer_on_raw_text_and_empty_batches():
    tokenizer = text_tasks.wordpiece()
    config = registry.get("bert_tiny").replace(vocab_size=tokenizer.vocab_size)
    tagger = BertTokenClassifier(BertEncoder(config), num_labels=3, tokenizer=tokenizer,
                                 label_names=["O", "B", "I"]).build_for_inputs()
    tagged = tagger.tag("the king and queen")
    assert tagged["words"] == ["the", "king", "and", "queen"]
    assert set(tagged["labels"]) <= {"O", "B", "I"}
    assert tagger.tag([])["words"] == []
    # A batch padded to its longest input is shorter than the longest answer allowed
    # (30 tokens): the span search must still run.
    qa = BertSpanQA(BertEncoder(config), tokenizer=tokenizer).build_for_inputs()
    answered = qa.answer("who lived", "the king lived in a castle")
    assert answered["answer"] in "the king lived in a castle" and answered["score"] > 0
    assert text_tasks.classifier().classify([])["label"] == []
