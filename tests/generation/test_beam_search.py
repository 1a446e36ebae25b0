"""Beam search against exhaustive search and a plain reference beam search, with
the length penalty, per-row settings, a context and early stopping; traced and
compiled with XLA."""
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.generation import (GenerationError, beam_search, left_pad, reorder_beams,
                                 repeat_for_beams)
from tests.generation.toy_models import ContextModel, all_hypotheses, run

MODES = ["graph", "xla"]
STOP = 0


def assert_hypotheses_equal(out, row, expected, pad_id=STOP):
    """out's hypotheses of `row` are `expected` [(score, ids)], in order."""
    assert len(expected) == out.scores.shape[1]
    for beam, (score, ids) in enumerate(expected):
        assert out.lengths[row, beam] == len(ids)
        np.testing.assert_array_equal(out.token_ids[row, beam, :len(ids)], ids)
        assert np.all(out.token_ids[row, beam, len(ids):] == pad_id)
        np.testing.assert_allclose(out.scores[row, beam], score, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("with_context", [False, True])
def test_wide_enough_beams_find_the_exhaustive_n_best(mode, with_context):
    # 4 tokens, stop id 0, 4 new tokens: at most 3^3 = 27 live prefixes, so 27
    # beams keep them all, and the 27 best of the 121 hypotheses are exact.
    model = ContextModel(vocab_size=4, seed=1)
    prompts = [[1, 2, 3], [2]]
    alphas = [0.0, 1.5]
    context = np.random.default_rng(2).normal(size=(2, 4)).astype("float32") * 2
    out = run(beam_search, mode, model.step, model.init_cache,
              left_pad(tf.ragged.constant(prompts)), 4, 27,
              length_penalty_alpha=tf.constant(alphas), stop_token_ids=tf.constant([STOP]),
              **({"context": tf.constant(context)} if with_context else {}))
    for row in range(2):
        expected = all_hypotheses(model, prompts[row], 4, 4, {STOP}, alphas[row],
                                  context[row] if with_context else None)
        assert_hypotheses_equal(out, row, expected[:27])


def reference_beam_search(model, prompt, vocab_size, max_new_tokens, num_beams, stop_ids,
                          alpha, context=None):
    """Textbook beam search without early stopping, from full passes of the model."""
    def penalised(score, length):
        return score / ((5 + length) / 6) ** alpha

    live, finished = [((), 0.0)], []
    for t in range(max_new_tokens):
        candidates = []
        for ids, score in live:
            log_probs = model.log_probs_after(prompt, [list(ids) + [0]], context)[0, t]
            for token in range(vocab_size):
                hypothesis = (ids + (token,), score + log_probs[token])
                if token in stop_ids:
                    finished.append((penalised(hypothesis[1], t + 1), hypothesis[0]))
                else:
                    candidates.append(hypothesis)
        live = sorted(candidates, key=lambda c: -c[1])[:num_beams]
    finished += [(penalised(score, max_new_tokens), ids) for ids, score in live]
    return sorted(finished, reverse=True)[:num_beams]


def likely_stop_context(batch_size, vocab_size, bias):
    """A context [B, V] that adds `bias` to the stop token's logit."""
    context = np.zeros((batch_size, vocab_size), "float32")
    context[:, STOP] = bias
    return context


def test_early_stopping_ends_the_search_without_changing_its_result():
    model = ContextModel(vocab_size=6, seed=3)
    prompts = [[4, 5, 1], [3]]
    context = likely_stop_context(2, 6, bias=8.0)
    calls = []

    def counting_step(*args, context):
        calls.append(1)
        return model.step(*args, context=context)

    out = tf.nest.map_structure(np.asarray, beam_search(  # eagerly, to count the steps
        counting_step, model.init_cache, left_pad(tf.ragged.constant(prompts)), 12, 3,
        length_penalty_alpha=[0.5, 0.0], stop_token_ids=[STOP], context=tf.constant(context)))
    assert len(calls) <= 4  # the prefill and at most 3 of the 11 steps
    for row, alpha in enumerate([0.5, 0.0]):
        expected = reference_beam_search(model, prompts[row], 6, 12, 3, {STOP}, alpha,
                                         context[row])
        assert_hypotheses_equal(out, row, expected)


@pytest.mark.parametrize("mode", MODES)
def test_n_best_are_ordered_and_each_score_is_its_hypothesis(mode):
    model = ContextModel(vocab_size=7, seed=4)
    prompts = [[1, 2], [6, 5, 4, 3, 2, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]]
    out = run(beam_search, mode, model.step, model.init_cache,
              left_pad(tf.ragged.constant(prompts)), 6, 4,
              length_penalty_alpha=tf.constant(0.8), stop_token_ids=tf.constant([STOP, 3]),
              context=tf.constant(likely_stop_context(2, 7, bias=1.0)))
    assert np.all(np.diff(out.scores, axis=1) <= 0)
    for row, prompt in enumerate(prompts):
        for beam in range(4):
            length = out.lengths[row, beam]
            ids = out.token_ids[row, beam, :length]
            assert length == 6 or ids[-1] in (STOP, 3)
            assert not np.isin(ids[:-1], (STOP, 3)).any()
            log_probs = model.log_probs_after(prompt, [ids], likely_stop_context(1, 7, 1.0)[0])
            total = log_probs[0, np.arange(length), ids].sum()
            np.testing.assert_allclose(out.scores[row, beam],
                                       total / ((5 + length) / 6) ** 0.8, rtol=1e-5)


def test_a_row_gives_the_same_hypotheses_alone_or_in_a_batch():
    model = ContextModel(vocab_size=5, seed=5)
    prompts = [[1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4, 1], [2]]

    def search(rows, alphas):
        return run(beam_search, "graph", model.step, model.init_cache,
                   left_pad(tf.ragged.constant([prompts[r] for r in rows])), 5, 3,
                   length_penalty_alpha=tf.constant(alphas), stop_token_ids=tf.constant([STOP]))

    together = search([0, 1], [0.3, 1.0])
    alone = search([1], [1.0])
    for got, want in zip(alone, together):
        np.testing.assert_allclose(got[0], want[1], rtol=1e-5)


@pytest.mark.parametrize("mode", MODES)
def test_each_row_searches_with_its_own_beam_width(mode):
    """Rows of widths 1, 2 and 4 in one batch of width 4 each find what a search of
    exactly their width finds, and leave the rest of their n-best empty."""
    model = ContextModel(vocab_size=6, seed=3)
    prompts = left_pad(tf.ragged.constant([[1, 2, 3], [4], [2, 5, 1, 1]]))
    mixed = run(beam_search, mode, model.step, model.init_cache, prompts, 5, 4,
                length_penalty_alpha=0.6, stop_token_ids=tf.constant([STOP]),
                beams_per_row=tf.constant([1, 2, 4]))
    for width in (1, 2, 4):
        alone = run(beam_search, mode, model.step, model.init_cache, prompts, 5, width,
                    length_penalty_alpha=0.6, stop_token_ids=tf.constant([STOP]))
        row = {1: 0, 2: 1, 4: 2}[width]
        np.testing.assert_allclose(mixed.scores[row, :width], alone.scores[row], rtol=1e-5)
        np.testing.assert_array_equal(mixed.token_ids[row, :width], alone.token_ids[row])
        assert np.all(mixed.scores[row, width:] == -np.inf)
        assert np.all(mixed.lengths[row, width:] == 0)


@pytest.mark.parametrize("mode", MODES)
def test_each_row_stops_at_its_own_most_new_tokens(mode):
    model = ContextModel(vocab_size=6, seed=4)
    prompts = left_pad(tf.ragged.constant([[1, 2, 3], [4]]))
    mixed = run(beam_search, mode, model.step, model.init_cache, prompts, 6, 3,
                length_penalty_alpha=0.6, stop_token_ids=tf.constant([STOP]),
                max_new_tokens_per_row=tf.constant([2, 6]))
    for row, most in ((0, 2), (1, 6)):
        alone = run(beam_search, mode, model.step, model.init_cache, prompts, most, 3,
                    length_penalty_alpha=0.6, stop_token_ids=tf.constant([STOP]))
        np.testing.assert_allclose(mixed.scores[row], alone.scores[row], rtol=1e-5)
        np.testing.assert_array_equal(mixed.token_ids[row, :, :most], alone.token_ids[row])
        assert np.all(mixed.lengths[row] <= most)


def test_repeat_and_reorder_move_whole_rows_of_every_tensor():
    cache = {"keys": tf.constant([[1, 1], [2, 2]]), "values": tf.constant([10, 20])}
    repeated = repeat_for_beams(cache, 3)
    np.testing.assert_array_equal(repeated["values"], [10, 10, 10, 20, 20, 20])
    beams = {"values": tf.constant([10, 11, 12, 20, 21, 22])}
    reordered = reorder_beams(beams, tf.constant([[2, 2, 0], [1, 0, 2]]))
    np.testing.assert_array_equal(reordered["values"], [12, 12, 10, 21, 20, 22])


def test_beam_counts_must_be_positive_ints():
    model = ContextModel(vocab_size=3)
    with pytest.raises(GenerationError, match="num_beams"):
        beam_search(model.step, model.init_cache, left_pad(tf.ragged.constant([[1]])), 3, 0)
