"""Packs one or two token segments into BERT inputs, padded to max_seq_length or
to the batch's longest row.

    single: [CLS] a [SEP] [PAD] ...          segment ids 0 0 0 ...
    pair:   [CLS] a [SEP] b [SEP] [PAD] ...  segment ids 0 0 0 1 1 ...

Pure TF ops, so the same code serves the training pipeline and the exported
serving signatures.
"""
import tensorflow as tf
import tensorflow_text as tf_text

from kerasllm.errors import DataError


def _rows_where(values, row_mask):
    """Keeps the rows of ragged `values` [B, (n)] where row_mask [B] is True; empties the rest."""
    item_mask = values.with_flat_values(tf.repeat(row_mask, values.row_lengths()))
    return tf.ragged.boolean_mask(values, item_mask)


def _trim_and_combine(segments, max_seq_length, cls_id, sep_id):
    budget = max_seq_length - 1 - len(segments)  # room left after [CLS] and one [SEP] each
    trimmed = tf_text.RoundRobinTrimmer(budget).trim(segments)
    token_ids, segment_ids = tf_text.combine_segments(trimmed, cls_id, sep_id)
    return token_ids, tf.cast(segment_ids, tf.int32)


def join_segments(segments, max_seq_length, cls_id, sep_id):
    """[CLS] a [SEP] (b [SEP]) without padding, trimmed to at most max_seq_length.

    Over-long input is trimmed round-robin: one token at a time is taken from the
    end of the longer segment, so both keep about half of the room.
    A pair row whose `b` is empty is packed like a single segment ("[CLS] a
    [SEP]", with the whole length available to `a`), so callers can mix single
    texts and pairs in one batch.

    Args:
      segments: list of 1 or 2 int RaggedTensors [batch, (tokens)].
      max_seq_length: python int, the longest output row.
      cls_id, sep_id: python ints.

    Returns:
      (token_ids, segment_ids): int32 RaggedTensors [batch, (<= max_seq_length)].
    """
    if len(segments) not in (1, 2):
        raise DataError(f"Can pack 1 or 2 segments, got {len(segments)}.")
    if max_seq_length < 2 * len(segments) + 1:
        raise DataError(
            f"max_seq_length={max_seq_length} cannot hold [CLS], one token per segment and "
            f"{len(segments)} [SEP]; use at least {2 * len(segments) + 1}.")
    segments = [tf.cast(segment, tf.int32) for segment in segments]
    single_ids, single_segment_ids = _trim_and_combine(segments[:1], max_seq_length, cls_id,
                                                       sep_id)
    if len(segments) == 1:
        return single_ids, single_segment_ids
    pair_ids, pair_segment_ids = _trim_and_combine(segments, max_seq_length, cls_id, sep_id)
    b_is_empty = tf.equal(segments[1].row_lengths(), 0)
    # Each row is empty in exactly one of the two parts, so concatenating picks it.
    token_ids = tf.concat([_rows_where(single_ids, b_is_empty),
                           _rows_where(pair_ids, ~b_is_empty)], axis=1)
    segment_ids = tf.concat([_rows_where(single_segment_ids, b_is_empty),
                             _rows_where(pair_segment_ids, ~b_is_empty)], axis=1)
    return token_ids, segment_ids


def pad_to_length(token_ids, segment_ids, max_seq_length, pad_id, pad_to_max_length=True):
    """Ragged [batch, (n)] rows of at most max_seq_length tokens (as join_segments
    returns them) -> the dense model-input dict (see pack_segments): S is
    max_seq_length, or with pad_to_max_length=False the longest row of the batch (at
    least 1), which spares a serving signature the work on padding; a model's
    outputs at the real positions are the same either way."""
    if not pad_to_max_length:
        # The longest row, but no [N, 0] for an empty batch: models read position 0.
        max_seq_length = tf.maximum(tf.reduce_max(token_ids.row_lengths()), 1)
    padded_ids, padding_mask = tf_text.pad_model_inputs(token_ids, max_seq_length, pad_id)
    padded_segment_ids, _ = tf_text.pad_model_inputs(segment_ids, max_seq_length, 0)
    shape = [None, max_seq_length if pad_to_max_length else None]
    return {name: tf.ensure_shape(tf.cast(value, tf.int32), shape) for name, value in (
        ("token_ids", padded_ids), ("segment_ids", padded_segment_ids),
        ("padding_mask", padding_mask))}


def pack_segments(segments, max_seq_length, cls_id, sep_id, pad_id, pad_to_max_length=True):
    """Packs 1 or 2 ragged segments into BERT inputs.

    Args:
      segments: list of 1 or 2 int RaggedTensors [batch, (tokens)].
      max_seq_length: python int, the longest row after packing.
      cls_id, sep_id, pad_id: python ints.
      pad_to_max_length: True pads every row to S = max_seq_length (a fixed shape,
        as training batches and accelerators want it); False to S = the longest
        packed row of the batch (<= max_seq_length; a serving signature's choice).

    Returns:
      {"token_ids": int32 [batch, S], "segment_ids": int32 [batch, S],
       "padding_mask": int32 [batch, S] (1 = real token, 0 = padding)}.
      Never fails on long input: see join_segments for the truncation rule.
    """
    token_ids, segment_ids = join_segments(segments, max_seq_length, cls_id, sep_id)
    return pad_to_length(token_ids, segment_ids, max_seq_length, pad_id, pad_to_max_length)
