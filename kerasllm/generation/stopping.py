"""When a row stops: at a stop token (EOS, <|im_end|>), or when its generated ids
end with one of its stop sequences (the tokens of "\\n\\nUser:", say)."""
from typing import NamedTuple

import tensorflow as tf


class StopSequences(NamedTuple):
    """Stop sequences right-aligned, for matching against the newest ids.

    Fields:
      ids: int32 [B, S, K], sequence s of row b in the last lengths[b, s] entries of
        ids[b, s], -1 (matches any id) before them.
      lengths: int32 [B, S], 0 for an unused entry.
    """
    ids: tf.Tensor
    lengths: tf.Tensor


def align_stop_sequences(ids, lengths=None):
    """StopSequences from int [B, S, K] ids, each sequence at the start of its
    entry, followed by -1 padding or with `lengths` int [B, S] (what survives TF
    Serving's batching, which pads a request's shorter inputs with zeros)."""
    ids = tf.cast(ids, tf.int32)
    if lengths is None:
        lengths = tf.reduce_sum(tf.cast(ids >= 0, tf.int32), axis=-1)
    lengths = tf.cast(lengths, tf.int32)
    width = tf.shape(ids)[2]
    # Entry j of the aligned sequence is entry j - (K - length) of the given one.
    source = tf.range(width)[None, None, :] - (width - lengths)[:, :, None]
    aligned = tf.gather(ids, tf.maximum(source, 0), batch_dims=2)
    return StopSequences(tf.where(source >= 0, aligned, -1), lengths)


def is_stop_token(token_ids, stop_token_ids):
    """bool [B]: token_ids int32 [B] is one of its row's stop_token_ids int32 [B, S]
    (-1 = no id)."""
    return tf.reduce_any(token_ids[:, None] == stop_token_ids, axis=-1)


def stop_sequence_length(generated, last, stop_sequences):
    """int32 [B]: the length of the longest stop sequence that each row's generated
    ids generated[:, :last + 1] end with, 0 for none.

    Args:
      generated: int32 [B, T], the ids generated so far from column 0.
      last: int32 scalar, the column of the newest id.
      stop_sequences: StopSequences [B, S, K].
    """
    width = tf.shape(stop_sequences.ids)[2]
    columns = last - width + 1 + tf.range(width)
    # -2 before the first generated id: it matches no id and no -1 wildcard, so a
    # sequence longer than what was generated cannot match.
    newest = tf.where(columns[None, :] >= 0,
                      tf.gather(generated, tf.maximum(columns, 0), axis=1), -2)
    matches = tf.reduce_all(
        (stop_sequences.ids == newest[:, None, :]) | (stop_sequences.ids == -1), axis=-1)
    matched_lengths = tf.where(matches & (stop_sequences.lengths > 0),
                               stop_sequences.lengths, 0)
    # A reduction over no sequences (S = 0) gives int32's minimum, not 0.
    return tf.maximum(tf.reduce_max(matched_lengths, axis=-1), 0)
