"""Packs token segments into the fixed-length inputs of a decoder-only language model
(GPT's format; BERT's "[CLS] a [SEP] b [SEP]" is in segment_packing):

    one segment:    <s> a <pad> ...
    more segments:  <s> a </s> b (</s> c ...) <pad> ...

</s> ends every segment but the last, so a model continues the last one; a
tokenizer without <s> (GPT-2's) starts at the first token. Pure TF ops, so the same
code serves data pipelines and exported signatures.
"""
import tensorflow as tf
import tensorflow_text as tf_text

from kerasllm.errors import DataError


def pack_lm_segments(segments, max_seq_length, bos_id, eos_id, pad_id):
    """Token segments -> {"token_ids", "padding_mask"} int32 [batch, max_seq_length].

    Over-long rows are trimmed round-robin, a token at a time from the end of the
    longest segment, so each segment keeps a share; <s> and every </s> stay. Empty
    segments are kept (an empty `b` still leaves "<s> a </s>").

    Args:
      segments: list of int RaggedTensors [batch, (tokens)] (as a tokenizer's
        `tokenize` returns them), at least one.
      max_seq_length: python int S, room for <s>, the </s> between segments and
        a token at least.
      bos_id: python int, or None for a tokenizer without <s>.
      eos_id: python int, or None (then only one segment can be packed).
      pad_id: python int, after the tokens (padding_mask 0 there, 1 before).

    Raises:
      DataError: no segments, several without an eos_id, or no room in S.
    """
    if not segments:
        raise DataError("pack needs at least one segment.")
    if len(segments) > 1 and eos_id is None:
        raise DataError(f"{len(segments)} segments need a </s> between them and this "
                        "tokenizer has none; pack 1 segment.")
    specials = ["<s>"] * (bos_id is not None) + ["</s>"] * (len(segments) - 1)
    if max_seq_length <= len(specials):
        raise DataError(f"max_seq_length={max_seq_length} cannot hold "
                        f"{' '.join(specials + ['a token'])}; use at least "
                        f"{len(specials) + 1}.")
    trimmed = tf_text.RoundRobinTrimmer(max_seq_length - len(specials)).trim(
        [tf.cast(segment, tf.int32) for segment in segments])
    batch_size = trimmed[0].nrows()

    def column(token_id):
        return tf.RaggedTensor.from_tensor(tf.fill([batch_size, 1], token_id))

    pieces = [column(bos_id)] if bos_id is not None else []
    for index, segment in enumerate(trimmed):
        if index:
            pieces.append(column(eos_id))
        pieces.append(segment)
    token_ids, padding_mask = tf_text.pad_model_inputs(
        tf.concat(pieces, axis=1), max_seq_length, pad_id)
    return {
        "token_ids": tf.ensure_shape(tf.cast(token_ids, tf.int32), [None, max_seq_length]),
        "padding_mask": tf.ensure_shape(tf.cast(padding_mask, tf.int32),
                                        [None, max_seq_length]),
    }
