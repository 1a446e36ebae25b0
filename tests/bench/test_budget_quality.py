"""The same-budget benchmark's parts that can break a two-hour run late: the plain
keras-hub translator at its position table, the keras-hub LM scored by kerasllm's
HeldOutLoss, and the report of sides that stopped at different steps."""
import numpy as np
import pytest
import tensorflow as tf

from bench import budget_quality, plain_keras_hub
from kerasllm.data.lm_examples import lm_dataset
from kerasllm.evaluation.language_model import HeldOutLoss
from kerasllm.evaluation.translation import translation_quality
from kerasllm.tokenizers import train_sentencepiece


def test_the_plain_translator_stops_at_its_position_table():
    tf.keras.utils.set_random_seed(0)  # before the tokenizer: reseeding clears TF's resources
    tokenizer = train_sentencepiece(["the king is dead, long live the queen"] * 50,
                                    vocab_size=278)
    model = plain_keras_hub.translator(tokenizer.vocab_size, max_length=16)
    translate = plain_keras_hub.greedy_translator(model, tokenizer, table_length=16)
    # Asked for 40 tokens, an untrained model would run past the 16 positions.
    quality = translation_quality(translate, ["the king", "long live the queen"],
                                  ["el rey", "viva la reina"], beam_size=1,
                                  length_penalty=0.0, max_length=40)
    assert len(quality.hypotheses) == 2
    with pytest.raises(ValueError, match="decodes greedily"):
        translation_quality(translate, ["the king"], ["el rey"], beam_size=4)


def test_the_keras_hub_lm_is_scored_as_kerasllm_scores_its_own():
    tf.keras.utils.set_random_seed(0)
    model = plain_keras_hub.causal_lm(50, max_length=16)
    stream = np.random.default_rng(0).integers(1, 50, 200).astype("int32")
    batch = next(iter(lm_dataset(stream, seq_length=8, batch_size=4, training=False)))
    logits = model({"token_ids": batch["token_ids"], "padding_mask": batch["padding_mask"]})
    expected = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
        batch["token_ids"][:, 1:], logits[:, :-1], from_logits=True))
    scores = HeldOutLoss([batch], "padding_mask", characters_per_token=2.0)(
        plain_keras_hub.ScoredCausalLM(model))
    assert scores["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_the_report_of_sides_that_stopped_at_different_steps():
    def records(*steps_seconds_bleu):
        return [{"step": s, "train_seconds": t, "bleu": b} for s, t, b in steps_seconds_bleu]

    results = {budget_quality.OURS: {"records": records((112, 100, 1.0), (224, 200, 5.0)),
                                     "test": {"bleu": 4.0}},
               budget_quality.THEIRS: {"records": records((112, 150, 2.0)), "test": {}}}
    text = "\n".join(budget_quality.report(results, "bleu", larger_is_better=True))
    assert "| 224 | 5.000 | 200 | n/a | n/a |" in text
    # Within keras-hub's 150 s ours had only its step-112 figure; within ours 200 s, all.
    assert "| keras-hub's time at step 112 | 150 | 1.000 | 2.000 |" in text
    assert "| kerasllm's time at step 224 | 200 | 5.000 | 2.000 |" in text
    assert "| keras-hub | n/a |" in text
