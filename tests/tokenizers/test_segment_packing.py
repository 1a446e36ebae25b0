import pytest
import tensorflow as tf

from kerasllm.errors import DataError
from kerasllm.tokenizers.segment_packing import pack_segments

CLS, SEP, PAD = 2, 3, 0


def test_single_segment_is_padded_and_truncated():
    a = tf.ragged.constant([[5, 6, 7, 8, 9], [11], []])
    packed = pack_segments([a], 5, CLS, SEP, PAD)
    assert packed["token_ids"].numpy().tolist() == [
        [CLS, 5, 6, 7, SEP], [CLS, 11, SEP, PAD, PAD], [CLS, SEP, PAD, PAD, PAD]]
    assert packed["padding_mask"].numpy().tolist() == [
        [1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]]
    assert packed["segment_ids"].numpy().sum() == 0


def test_pair_is_trimmed_round_robin_with_segment_ids():
    a = tf.ragged.constant([[5, 6, 7, 8, 9, 10], [12, 13]])
    b = tf.ragged.constant([[20, 21], [22, 23, 24, 25, 26, 27]])
    packed = pack_segments([a, b], 8, CLS, SEP, PAD)
    assert packed["token_ids"].numpy().tolist() == [
        [CLS, 5, 6, 7, SEP, 20, 21, SEP], [CLS, 12, 13, SEP, 22, 23, 24, SEP]]
    assert packed["segment_ids"].numpy().tolist() == [
        [0, 0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1]]
    assert all(v.shape == (2, 8) and v.dtype == tf.int32 for v in packed.values())


def test_pair_row_with_empty_b_is_packed_as_single_segment():
    a = tf.ragged.constant([[5, 6, 7, 8, 9, 10], [12]])
    b = tf.ragged.constant([[], [22]], dtype=tf.int32)
    packed = pack_segments([a, b], 6, CLS, SEP, PAD)
    assert packed["token_ids"].numpy().tolist() == [
        [CLS, 5, 6, 7, 8, SEP], [CLS, 12, SEP, 22, SEP, PAD]]
    assert packed["segment_ids"].numpy().tolist() == [[0] * 6, [0, 0, 0, 1, 1, 0]]


def test_works_in_a_tf_function_with_unknown_batch():
    spec = tf.RaggedTensorSpec([None, None], tf.int32)

    @tf.function(input_signature=[spec, spec])
    def pack(a, b):
        return pack_segments([a, b], 16, CLS, SEP, PAD)

    packed = pack(tf.ragged.constant([[7] * 40]), tf.ragged.constant([[8] * 3]))
    assert packed["token_ids"].shape == (1, 16)
    assert packed["padding_mask"].numpy().sum() == 16


def test_pad_to_max_length_false_pads_to_the_longest_row():
    a = tf.ragged.constant([[5, 6, 7], [11]])
    b = tf.ragged.constant([[20], []])
    fixed = pack_segments([a, b], 8, CLS, SEP, PAD)
    longest = pack_segments([a, b], 8, CLS, SEP, PAD, pad_to_max_length=False)
    assert longest["token_ids"].numpy().tolist() == [[CLS, 5, 6, 7, SEP, 20, SEP],
                                                     [CLS, 11, SEP, PAD, PAD, PAD, PAD]]
    for name, values in longest.items():
        assert values.shape == (2, 7) and values.dtype == tf.int32
        assert values.numpy().tolist() == fixed[name][:, :7].numpy().tolist()
    # Still capped at max_seq_length, and an empty batch is [0, 1], not [0, 0].
    capped = pack_segments([tf.ragged.constant([[7] * 40])], 8, CLS, SEP, PAD,
                           pad_to_max_length=False)
    assert capped["token_ids"].shape == (1, 8) and capped["padding_mask"].numpy().sum() == 8
    empty = tf.ragged.constant([], tf.int32, ragged_rank=1)
    assert pack_segments([empty], 8, CLS, SEP, PAD,
                         pad_to_max_length=False)["token_ids"].shape == (0, 1)


def test_bad_arguments():
    a = tf.ragged.constant([[5]])
    with pytest.raises(DataError):
        pack_segments([a, a, a], 16, CLS, SEP, PAD)
    with pytest.raises(DataError, match="max_seq_length"):
        pack_segments([a, a], 4, CLS, SEP, PAD)
