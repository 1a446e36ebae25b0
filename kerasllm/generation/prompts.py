"""A batch of prompts of different lengths as one left-padded block for prefill.

Left padding puts every row's last prompt token in the same cache slot, so decoding
writes one slot per step for the whole batch. The block's width is rounded up to a
multiple of `length_multiple`: a compiled generation loop (jit_compile=True) is
compiled once per prompt width, and bucketing bounds how many widths there are.
"""
from typing import NamedTuple

import tensorflow as tf

LENGTH_MULTIPLE = 16


class Prompts(NamedTuple):
    """Left-padded prompts; a tf.nest structure, so it passes into a tf.function.

    Fields:
      token_ids: int32 [B, L], each row's tokens at its end, `pad_id` before them.
      lengths: int32 [B], each row's number of real tokens (at least 1: a model
        needs a token to predict from, e.g. BOS for an empty text).
    """
    token_ids: tf.Tensor
    lengths: tf.Tensor

    @property
    def key_mask(self):
        """int32 [B, L]: 1 at real tokens, 0 at the left padding."""
        return tf.cast(_offsets(self) >= 0, tf.int32)

    @property
    def positions(self):
        """int32 [B, L]: each token's position in its own prompt (0 at its first
        real token), 0 at the padding."""
        return tf.maximum(_offsets(self), 0)


def _offsets(prompts):
    """int32 [B, L]: slot minus the row's padding width, negative at the padding."""
    width = tf.shape(prompts.token_ids)[1]
    return tf.range(width)[None, :] - (width - prompts.lengths)[:, None]


def padded_length(longest, length_multiple=LENGTH_MULTIPLE):
    """`longest` (an int or an int32 tensor) rounded up to a multiple of
    `length_multiple`, at least one multiple."""
    longest = tf.maximum(longest, 1)
    return (longest + length_multiple - 1) // length_multiple * length_multiple


def left_pad(token_ids, lengths=None, *, pad_id=0, length_multiple=LENGTH_MULTIPLE):
    """Prompts of different lengths as `Prompts`, left-padded to a bucketed width.

    Args:
      token_ids: tf.RaggedTensor int [B, (n)]; or a dense int [B, W] whose rows
        start with their tokens, with `lengths`.
      lengths: int [B], real tokens per row of a dense `token_ids` (what follows is
        ignored); None for a ragged one.
      pad_id: the id put in the padding: a valid id, as the step is fed it (and
        `key_mask` hides it).
      length_multiple: the width is the longest prompt rounded up to a multiple
        of this.
    Returns:
      Prompts with token_ids int32 [B, padded_length(longest)]. Run eagerly, the
      width is concrete, so one compiled `generate` serves every batch in its
      bucket; in a graph (an export) it is computed at run time.
    """
    if lengths is not None:
        token_ids = tf.RaggedTensor.from_tensor(token_ids, lengths=lengths)
    token_ids = tf.cast(token_ids, tf.int32)
    lengths = tf.cast(token_ids.row_lengths(), tf.int32)
    width = padded_length(tf.reduce_max(lengths), length_multiple)
    right_padded = token_ids.to_tensor(
        default_value=pad_id, shape=tf.stack([tf.shape(lengths, tf.int32)[0], width]))
    # Rotating each row right by its padding width moves the padding to the front:
    # slot j of a row of length n reads column (j + n) mod width.
    columns = (tf.range(width)[None, :] + lengths[:, None]) % width
    return Prompts(tf.gather(right_padded, columns, batch_dims=1), lengths)
