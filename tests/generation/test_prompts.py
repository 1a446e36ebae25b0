"""Prompts of different lengths become one left-padded block of a bucketed width."""
import numpy as np
import tensorflow as tf

from kerasllm.generation import generate, left_pad, padded_length
from tests.generation.toy_models import TransitionModel


def test_ragged_prompts_are_left_padded_to_a_multiple():
    prompts = left_pad(tf.ragged.constant([[5, 6, 7], [8, 9, 10, 11, 12]]), pad_id=1,
                       length_multiple=4)
    np.testing.assert_array_equal(prompts.token_ids, [[1, 1, 1, 1, 1, 5, 6, 7],
                                                      [1, 1, 1, 8, 9, 10, 11, 12]])
    np.testing.assert_array_equal(prompts.lengths, [3, 5])
    np.testing.assert_array_equal(prompts.key_mask, [[0, 0, 0, 0, 0, 1, 1, 1],
                                                     [0, 0, 0, 1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(prompts.positions, [[0, 0, 0, 0, 0, 0, 1, 2],
                                                      [0, 0, 0, 0, 1, 2, 3, 4]])


def test_right_padded_prompts_with_lengths_give_the_same_block():
    dense = tf.constant([[5, 6, 7, 99, 99], [8, 9, 10, 11, 12]])  # 99: ignored
    ragged = tf.ragged.constant([[5, 6, 7], [8, 9, 10, 11, 12]])
    for got, want in zip(left_pad(dense, tf.constant([3, 5])), left_pad(ragged)):
        np.testing.assert_array_equal(got, want)
    assert left_pad(ragged).token_ids.shape == (2, 16)


def test_widths_round_up_and_never_reach_zero():
    assert [int(padded_length(n, 16)) for n in (0, 1, 16, 17, 40)] == [16, 16, 16, 32, 48]


def test_prompts_in_one_bucket_share_one_trace_of_the_loop():
    model = TransitionModel(np.eye(4) * 3.0)
    traced = tf.function(lambda prompts: generate(model.step, model.init_cache, prompts, 3))
    for prompt_length in (1, 5, 16, 17, 30):
        traced(left_pad(tf.ones([2, prompt_length], tf.int32), tf.fill([2], prompt_length)))
    assert traced.experimental_get_tracing_count() == 2  # widths 16 and 32


def test_left_padding_in_a_graph_takes_any_batch():
    padded = tf.function(
        lambda ids, lengths: left_pad(ids, lengths, length_multiple=4),
        input_signature=[tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.int32)])
    prompts = padded(tf.constant([[3, 4, 0], [5, 0, 0]]), tf.constant([2, 1]))
    np.testing.assert_array_equal(prompts.token_ids, [[0, 0, 3, 4], [0, 0, 0, 5]])
    np.testing.assert_array_equal(prompts.positions, [[0, 0, 0, 1], [0, 0, 0, 0]])
