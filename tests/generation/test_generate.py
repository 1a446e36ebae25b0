"""`generate`: what the step is fed, greedy chains, left padding and batch
neighbours that change nothing, stop tokens and stop sequences, early exit; traced
and compiled with XLA."""
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.generation import (LENGTH, STOP_SEQUENCE, STOP_TOKEN, GenerationError,
                                 generate, left_pad)
from tests.generation.toy_models import ContextModel, TransitionModel, compiled, run

MODES = ["graph", "xla"]


def cycle_model(next_ids):
    """A TransitionModel that surely follows token v with next_ids[v]."""
    return TransitionModel(np.eye(len(next_ids))[next_ids] * 20.0)


CYCLE = cycle_model([0, 2, 3, 4, 5, 1])  # 1 -> 2 -> 3 -> 4 -> 5 -> 1 ..., 0 -> 0


@pytest.mark.parametrize("mode", MODES)
def test_greedy_follows_the_argmax_chain(mode):
    table = np.random.default_rng(0).normal(size=(7, 7))
    model = TransitionModel(table)
    prompts = left_pad(tf.ragged.constant([[1, 2, 3], [4], [6, 6, 6, 6, 0]]))
    out = run(generate, mode, model.step, model.init_cache, prompts, 6)
    for row, last in enumerate([3, 4, 0]):
        chain = []
        for _ in range(6):
            last = int(np.argmax(table[last]))
            chain.append(last)
        np.testing.assert_array_equal(out.token_ids[row], chain)
    np.testing.assert_array_equal(out.lengths, [6, 6, 6])
    np.testing.assert_array_equal(out.finish_reasons, [LENGTH] * 3)


def test_the_step_is_fed_the_prompt_once_then_one_token_per_slot():
    calls = []

    def recording_step(token_ids, cache, cache_index, positions, key_mask):
        calls.append([np.asarray(x) for x in (token_ids, cache_index, positions, key_mask)])
        return CYCLE.step(token_ids, cache, cache_index, positions, key_mask)

    prompts = left_pad(tf.ragged.constant([[1, 2, 3], [4]]), length_multiple=4)
    out = generate(recording_step, CYCLE.init_cache, prompts, 4)  # eagerly
    np.testing.assert_array_equal(out.token_ids, [[4, 5, 1, 2], [5, 1, 2, 3]])
    assert len(calls) == 4  # the prefill and 3 steps: the last token is never fed
    token_ids, cache_index, positions, key_mask = calls[0]
    np.testing.assert_array_equal(token_ids, [[0, 1, 2, 3], [0, 0, 0, 4]])
    assert cache_index == 0
    np.testing.assert_array_equal(positions, [[0, 0, 1, 2], [0, 0, 0, 0]])
    np.testing.assert_array_equal(key_mask, [[0, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 1]])
    for t, (token_ids, cache_index, positions, key_mask) in enumerate(calls[1:], 1):
        np.testing.assert_array_equal(token_ids, out.token_ids[:, t - 1:t])
        assert cache_index == 4 + t - 1
        np.testing.assert_array_equal(positions, [[3 + t - 1], [1 + t - 1]])
        np.testing.assert_array_equal(key_mask, calls[0][3])


SETTINGS = {  # five rows: greedy, plain sampling, top-k, top-p, all three
    "temperature": [0.0, 1.0, 0.8, 1.2, 0.9],
    "top_k": [0, 0, 4, 0, 6],
    "top_p": [1.0, 1.0, 1.0, 0.7, 0.9],
    "seeds": [5, 6, 7, 8, 9],
}


@pytest.mark.parametrize("mode", MODES)
def test_a_row_gives_the_same_tokens_alone_or_with_any_neighbours(mode):
    # Prompts of 2 to 21 tokens: alone, the short ones are padded to 16, together
    # to 32; every row's logits depend on all its tokens and their positions.
    model = ContextModel(vocab_size=12, integer=True)
    rng = np.random.default_rng(3)
    prompts = [list(rng.integers(0, 12, n)) for n in (2, 21, 5, 9, 14)]
    decode = compiled(generate, mode, step=model.step, init_cache=model.init_cache,
                      max_new_tokens=8, stop_token_ids=tf.constant([0]))

    def generate_rows(rows):
        return decode(prompts=left_pad(tf.ragged.constant([prompts[r] for r in rows])),
                      **{name: tf.constant(np.asarray(values)[rows])
                         for name, values in SETTINGS.items()})

    together = generate_rows([0, 1, 2, 3, 4])
    shuffled = generate_rows([3, 0, 4, 1])
    for position, row in enumerate([3, 0, 4, 1]):
        for got, want in zip(shuffled, together):
            np.testing.assert_array_equal(got[position], want[row])
    for row in (0, 2):
        for got, want in zip(generate_rows([row]), together):
            np.testing.assert_array_equal(got[0], want[row])
    # The sampled rows do sample: new seeds give new tokens.
    reseeded = decode(prompts=left_pad(tf.ragged.constant(prompts)),
                      **{**{name: tf.constant(values) for name, values in SETTINGS.items()},
                         "seeds": tf.constant([50, 60, 70, 80, 90])})
    np.testing.assert_array_equal(reseeded.token_ids[0], together.token_ids[0])
    assert not np.array_equal(reseeded.token_ids[1:], together.token_ids[1:])


@pytest.mark.parametrize("mode", MODES)
def test_rows_stop_at_their_stop_tokens(mode):
    prompts = left_pad(tf.ragged.constant([[1], [3, 4], [5]]))
    out = run(generate, mode, CYCLE.step, CYCLE.init_cache, prompts, 6,
              stop_token_ids=tf.constant([[4, -1], [3, 2], [-1, -1]]), pad_id=0)
    np.testing.assert_array_equal(out.token_ids, [[2, 3, 4, 0, 0, 0],
                                                  [5, 1, 2, 0, 0, 0],
                                                  [1, 2, 3, 4, 5, 1]])
    np.testing.assert_array_equal(out.lengths, [3, 3, 6])
    np.testing.assert_array_equal(out.finish_reasons, [STOP_TOKEN, STOP_TOKEN, LENGTH])
    np.testing.assert_array_equal(out.stop_lengths, [1, 1, 0])


@pytest.mark.parametrize("mode", MODES)
def test_rows_stop_when_their_new_tokens_end_with_a_stop_sequence(mode):
    # Row 0 waits for 3 4 5, which it generates at tokens 3..5 and again later; row 1
    # has 4 5 1 and 2 3 4, of which 2 3 4 comes first; row 2's prompt ends with 3 4,
    # but its new tokens start at 5: no match until 3 4 5 comes round again.
    prompts = left_pad(tf.ragged.constant([[5], [1], [3, 4]]))
    sequences = tf.constant([[[3, 4, 5], [-1, -1, -1]],
                             [[4, 5, 1], [2, 3, 4]],
                             [[3, 4, 5], [9, -1, -1]]])
    out = run(generate, mode, CYCLE.step, CYCLE.init_cache, prompts, 10,
              stop_sequences=sequences, pad_id=0)
    np.testing.assert_array_equal(out.token_ids, [[1, 2, 3, 4, 5, 0, 0, 0, 0, 0],
                                                  [2, 3, 4, 0, 0, 0, 0, 0, 0, 0],
                                                  [5, 1, 2, 3, 4, 5, 0, 0, 0, 0]])
    np.testing.assert_array_equal(out.lengths, [5, 3, 6])
    np.testing.assert_array_equal(out.finish_reasons, [STOP_SEQUENCE] * 3)
    np.testing.assert_array_equal(out.stop_lengths, [3, 3, 3])


def test_stop_sequences_with_lengths_ignore_zero_padding():
    # As TF Serving batches them: a request's shorter list padded with zeros.
    prompts = left_pad(tf.ragged.constant([[1], [1]]))
    out = generate(CYCLE.step, CYCLE.init_cache, prompts, 8,
                   stop_sequences=tf.constant([[[4, 5, 0], [0, 0, 0]], [[2, 3, 0], [1, 0, 0]]]),
                   stop_sequence_lengths=tf.constant([[2, 0], [2, 1]]))
    np.testing.assert_array_equal(out.lengths, [4, 2])
    np.testing.assert_array_equal(out.stop_lengths, [2, 2])


def test_a_stop_token_takes_precedence_and_shared_settings_broadcast():
    prompts = left_pad(tf.ragged.constant([[1], [2]]))
    out = generate(CYCLE.step, CYCLE.init_cache, prompts, 5, stop_token_ids=[4],
                   stop_sequences=[[3, 4], [5, 1]])
    np.testing.assert_array_equal(out.lengths, [3, 2])
    np.testing.assert_array_equal(out.finish_reasons, [STOP_TOKEN, STOP_TOKEN])
    np.testing.assert_array_equal(out.stop_lengths, [1, 1])


def test_the_loop_ends_when_every_row_has_stopped():
    steps = []

    def counting_step(*args):
        steps.append(1)
        return CYCLE.step(*args)

    prompts = left_pad(tf.ragged.constant([[1], [3]]))
    out = generate(counting_step, CYCLE.init_cache, prompts, 50, stop_token_ids=[4, 5])
    np.testing.assert_array_equal(out.lengths, [3, 1])
    assert len(steps) == 3  # the prefill and two steps: tokens 1 and 2 of row 0


@pytest.mark.parametrize("mode", MODES)
def test_rows_stop_at_their_own_most_new_tokens(mode):
    # As TF Serving requests each carry their own; 9 is clipped to the call's 6, 0 to 1.
    prompts = left_pad(tf.ragged.constant([[1], [1], [1], [1]]))
    out = run(generate, mode, CYCLE.step, CYCLE.init_cache, prompts, 6,
              max_new_tokens_per_row=tf.constant([2, 5, 9, 0]),
              stop_token_ids=tf.constant([[-1], [4], [-1], [-1]]))
    np.testing.assert_array_equal(out.token_ids, [[2, 3, 0, 0, 0, 0],
                                                  [2, 3, 4, 0, 0, 0],
                                                  [2, 3, 4, 5, 1, 2],
                                                  [2, 0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(out.lengths, [2, 3, 6, 1])
    np.testing.assert_array_equal(out.finish_reasons, [LENGTH, STOP_TOKEN, LENGTH, LENGTH])


def test_max_new_tokens_must_be_a_positive_int():
    prompts = left_pad(tf.ragged.constant([[1]]))
    with pytest.raises(GenerationError, match="max_new_tokens"):
        generate(CYCLE.step, CYCLE.init_cache, prompts, 0)


@pytest.mark.parametrize("mode", MODES)
def test_log_probs_are_the_models_own_whatever_shaped_the_draw(mode):
    # Sampled at temperature 1.5 with top-k 3: the log-probabilities are still those of
    # table[previous token], and the alternatives its most likely tokens.
    table = np.random.default_rng(1).normal(size=(7, 7)) * 2
    model = TransitionModel(table)
    prompts = left_pad(tf.ragged.constant([[1, 2], [4]]))
    out = run(generate, mode, model.step, model.init_cache, prompts, 5,
              temperature=tf.constant([0.0, 1.5]), top_k=tf.constant([0, 3]),
              seeds=tf.constant([0, 4]), max_new_tokens_per_row=tf.constant([5, 3]),
              top_logprobs=4)
    log_softmax = table - np.log(np.exp(table).sum(axis=1, keepdims=True))
    for row, previous in enumerate([2, 4]):
        for t in range(5):
            if t >= out.lengths[row]:
                assert out.log_probs[row, t] == 0
                np.testing.assert_array_equal(out.top_ids[row, t], [-1] * 4)
                continue
            token = out.token_ids[row, t]
            np.testing.assert_allclose(out.log_probs[row, t], log_softmax[previous, token],
                                       atol=1e-5)
            best = np.argsort(-log_softmax[previous])[:4]
            np.testing.assert_array_equal(out.top_ids[row, t], best)
            np.testing.assert_allclose(out.top_log_probs[row, t],
                                       log_softmax[previous, best], atol=1e-5)
            previous = token


def test_top_logprobs_must_be_a_non_negative_int():
    prompts = left_pad(tf.ragged.constant([[1]]))
    with pytest.raises(GenerationError, match="top_logprobs"):
        generate(CYCLE.step, CYCLE.init_cache, prompts, 2, top_logprobs=-1)
