"""Translation quality for validation: greedy decoding at one beam, batches of similar
length in the callers' order, each sentence's own length limit."""
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.evaluation.translation import (TranslationEvaluator, corpus_quality,
                                             greedy_translator, reference_limits, translate_all)
from kerasllm.models.seq2seq import Seq2SeqLM
from kerasllm.tokenizers import train_sentencepiece

LENGTHS = {"max_source_length": 24, "max_target_length": 12}
WORDS = "the quick brown fox jumps over a lazy dog then runs into the deep forest".split()
SOURCES = ["the fox", "a lazy dog then runs into the deep forest and the quick brown fox",
           "", "over the dog", "the deep forest runs"]


@pytest.fixture(scope="module")
def tokenizer():
    rng = np.random.default_rng(0)
    return train_sentencepiece([" ".join(rng.choice(WORDS, 12)) for _ in range(300)],
                               vocab_size=300)


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(3)
    return Seq2SeqLM.from_name("seq2seq_tiny", vocab_size=300, hidden_size=32, num_heads=2,
                               intermediate_size=64, dropout=0.0).build_for_inputs()


def test_the_validation_translator_searches_one_beam(model, tokenizer):
    translate = greedy_translator(model, tokenizer, **LENGTHS)
    rows = len(SOURCES)
    outputs = translate(tf.constant(SOURCES), tf.fill([rows], 4), tf.fill([rows], 0.0),
                        tf.fill([rows], 12))
    assert outputs["translations"].shape == (rows, 1)


def test_batches_keep_the_order_and_each_sentences_limit(model, tokenizer):
    translate = greedy_translator(model, tokenizer, **LENGTHS)
    limits = [3, 12, 5, 2, 8]
    together = translate_all(translate, SOURCES, max_length=limits, length_penalty=0.0,
                             batch_size=2)
    alone = [translate_all(translate, [source], max_length=limit, length_penalty=0.0)[0]
             for source, limit in zip(SOURCES, limits)]
    assert together == alone
    longest = translate_all(translate, SOURCES, max_length=12, length_penalty=0.0)
    # Greedy decoding cut shorter is a prefix of the same decoding let run.
    assert all(long.startswith(short) for long, short in zip(longest, together))
    assert together[2] == ""  # an empty source translates to nothing


def test_reference_limits_are_half_again_the_references_tokens(tokenizer):
    references = ["the fox", "a lazy dog then runs into the deep forest", ""]
    counts = [len(tokenizer.tokenize(tf.constant([r]))[0]) for r in references]
    assert reference_limits(tokenizer, references).tolist() == [2 + 3 * n // 2 for n in counts]


def test_the_evaluator_scores_greedy_translations_within_those_limits(model, tokenizer):
    references = ["the fox runs", "a dog", "", "over the lazy dog", "the forest"]
    scores = TranslationEvaluator(SOURCES, references, tokenizer, batch_size=2,
                                  **LENGTHS)(model)
    hypotheses = translate_all(greedy_translator(model, tokenizer, **LENGTHS), SOURCES,
                               max_length=reference_limits(tokenizer, references),
                               length_penalty=0.0)
    quality = corpus_quality(hypotheses, references)
    assert scores == {"bleu": quality.bleu, "chrf": quality.chrf}
