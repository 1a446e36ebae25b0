"""Language-model training examples: a corpus as one stream of tokens, cut into windows.

    documents (lists of text lines)
      -> token_stream (once)      each document's lines joined by newlines and
                                  tokenized, an end-of-text id after each document
      -> lm_dataset               windows of S tokens, a fresh random offset each
                                  epoch so window boundaries move, shuffled, batched
A window is a training example as it stands: a causal LM predicts each of its
tokens from the ones before (kerasllm.models.gpt.GptCausalLM shifts inside its
loss), so no token is padding and every window gives S - 1 predictions.

The training stream is a pure function of (seed, batch number): epoch e is the
W windows that fit at offset o_e (W the same for every offset), in the order of
a random permutation of [0, W); both drawn statelessly from (seed, e). Batch k
holds examples kB .. kB + B - 1 of the endless sequence of epochs, so a resumed
run starts at any batch without reading the ones before it (`start_batch`, see
kerasllm.training.input_position), and every epoch shows each of its windows exactly once.
"""
import functools

import numpy as np
import tensorflow as tf

from kerasllm.data.batching import sharded_dataset_fn
from kerasllm.errors import DataError


def token_stream(documents, tokenizer, end_of_text_id, batch_size=256):
    """int32 numpy [n]: every document tokenized, each followed by `end_of_text_id`.

    Args:
      documents: list of documents, each a list of text lines (see
        kerasllm.data.corpus.read_documents); a document's lines are joined by
        newlines, so the model sees line breaks where the tokenizer keeps them.
      tokenizer: a kerasllm.tokenizers.Tokenizer.
      end_of_text_id: the id that separates documents (the tokenizer's EOS).
    """
    texts = ["\n".join(document) for document in documents]
    if not texts:
        raise DataError("the corpus has no documents to tokenize")
    pieces = []
    for batch in tf.data.Dataset.from_tensor_slices(texts).batch(batch_size).map(
            tokenizer.tokenize, num_parallel_calls=tf.data.AUTOTUNE):
        ends = tf.fill([batch.nrows(), 1], tf.cast(end_of_text_id, batch.dtype))
        pieces.append(tf.concat([batch, tf.RaggedTensor.from_tensor(ends)], axis=1)
                      .flat_values.numpy())
    return np.concatenate(pieces).astype(np.int32)


def lm_dataset(stream, *, seq_length, batch_size, training, seed=None, start_batch=0):
    """tf.data batches of `seq_length`-token windows of `stream`.

    Args:
      stream: int numpy [n], e.g. from token_stream.
      seq_length: S, tokens per window.
      batch_size: B.
      training: True: repeats forever; every epoch starts the windows at a random
        offset in [0, S) and visits the (n - S + 1) // S windows that fit at
        any offset in a random order, each once; both drawn from `seed` and the
        epoch; only full batches, which may straddle two epochs. False: one pass
        over the windows from offset 0, in order, the last batch possibly smaller.
      seed: offsets and order (training only); None acts as 0.
      start_batch: training only: the first batch to give, at no cost (the
        batches before it are not computed): a resumed run's position.
    Returns:
      tf.data.Dataset of {"token_ids": int32 [B, S], "padding_mask": int32 [B, S]}.
    Raises:
      DataError: the stream is shorter than one batch of windows (training) or
        than one window.
    """
    stream = np.asarray(stream, np.int32)
    if training:  # the windows that fit whatever the offset
        windows = max((len(stream) - seq_length + 1) // seq_length, 0)
    else:
        windows = len(stream) // seq_length
    needed = batch_size if training else 1
    if seq_length < 2 or windows < needed:
        raise DataError(f"{len(stream)} tokens make {windows} windows of "
                        f"{seq_length}, fewer than the {needed} a "
                        f"{'training batch' if training else 'pass'} needs; use more text, "
                        "a shorter sequence length or a smaller batch")
    tokens = tf.constant(stream)
    if training:
        dataset = tf.data.Dataset.range(start_batch, np.iinfo(np.int64).max).map(
            _training_batch(tokens, seq_length, batch_size, windows, seed or 0),
            num_parallel_calls=tf.data.AUTOTUNE)
    else:
        count = windows * seq_length
        dataset = tf.data.Dataset.from_tensor_slices(
            tf.reshape(tokens[:count], [-1, seq_length])).batch(batch_size)
    return dataset.map(lambda ids: {"token_ids": ids, "padding_mask": tf.ones_like(ids)},
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _training_batch(tokens, seq_length, batch_size, windows, seed):
    """batch number -> int32 [B, S]: the windows of examples kB .. kB + B - 1."""
    def offset(epoch):
        return tf.random.stateless_uniform([], tf.stack([tf.constant(seed, tf.int64), epoch]),
                                           0, seq_length, tf.int64)

    def batch(index):
        example = index * batch_size + tf.range(batch_size, dtype=tf.int64)
        epoch, position = example // windows, example % windows
        # The op itself: tf.random.experimental.index_shuffle mis-pads [n, 2] seeds.
        seeds = tf.stack([tf.fill([batch_size], tf.constant(seed, tf.int64)), epoch,
                          tf.zeros([batch_size], tf.int64)], axis=1)
        window = tf.raw_ops.RandomIndexShuffle(
            index=position, seed=seeds,
            max_index=tf.fill([batch_size], tf.constant(windows - 1, tf.int64)))
        # windows >= batch_size, so a batch spans at most two epochs.
        first = epoch[0]
        offsets = tf.gather(tf.stack([offset(first), offset(first + 1)]), epoch - first)
        starts = offsets + window * seq_length
        return tf.gather(tokens, starts[:, tf.newaxis] + tf.range(seq_length, dtype=tf.int64))

    return batch


def lm_dataset_fn(stream, *, seq_length, global_batch_size, seed=None):
    """A training dataset_fn for kerasllm.training.loop.train: each input pipeline
    reads its own contiguous share of the stream (disjoint text), with its own seed
    (see kerasllm.data.batching.sharded_dataset_fn).

    Returns:
      Callable[[tf.distribute.InputContext, int], tf.data.Dataset]: the
      pipeline's batches from `start_batch` on (see lm_dataset).
    """
    return sharded_dataset_fn(
        stream, functools.partial(lm_dataset, seq_length=seq_length, training=True),
        global_batch_size=global_batch_size, seed=seed, contiguous=True)
