"""Language-model training examples: a corpus as one stream of tokens, cut into windows.

    documents (lists of text lines)
      -> token_stream (once)      each document's lines joined by newlines and
                                  tokenized, an end-of-text id after each document
      -> lm_dataset               windows of S tokens, a fresh random offset each
                                  epoch so window boundaries move, shuffled, batched
A window is a training example as it stands: a causal LM predicts each of its
tokens from the ones before (kerasllm.models.gpt.GptCausalLM shifts inside its
loss), so no token is padding and every window gives S - 1 predictions.
"""
import numpy as np
import tensorflow as tf

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


def lm_dataset(stream, *, seq_length, batch_size, training, seed=None):
    """tf.data batches of `seq_length`-token windows of `stream`.

    Args:
      stream: int numpy [n], e.g. from token_stream.
      seq_length: S, tokens per window.
      batch_size: B.
      training: True: repeats forever; every epoch starts the windows at a random
        offset in [0, S) (drawn from `seed` and the epoch) and shuffles them;
        only full batches. False: one pass over the windows from offset 0, in
        order, the last batch possibly smaller.
      seed: offsets and shuffling (training only).
    Returns:
      tf.data.Dataset of {"token_ids": int32 [B, S], "padding_mask": int32 [B, S]}.
    Raises:
      DataError: the stream is shorter than one batch of windows (training) or
        than one window.
    """
    stream = np.asarray(stream, np.int32)
    windows_per_pass = (len(stream) - seq_length) // seq_length + 1 if len(stream) else 0
    needed = batch_size if training else 1
    if seq_length < 2 or len(stream) < seq_length or windows_per_pass < needed:
        raise DataError(f"{len(stream)} tokens make {max(windows_per_pass, 0)} windows of "
                        f"{seq_length}, fewer than the {needed} a "
                        f"{'training batch' if training else 'pass'} needs; use more text, "
                        "a shorter sequence length or a smaller batch")
    tokens = tf.constant(stream)

    def windows(offset):
        count = (tf.size(tokens) - offset) // seq_length
        return tf.data.Dataset.from_tensor_slices(
            tf.reshape(tokens[offset:offset + count * seq_length], [-1, seq_length]))

    if training:
        epoch_seeds = tf.data.Dataset.counter().map(
            lambda epoch: tf.stack([tf.cast(seed or 0, tf.int64), epoch]))
        dataset = epoch_seeds.flat_map(lambda epoch_seed: windows(
            tf.random.stateless_uniform([], epoch_seed, 0, seq_length, tf.int32)))
        dataset = dataset.shuffle(min(windows_per_pass, 10_000), seed=seed)
        dataset = dataset.batch(batch_size, drop_remainder=True)
    else:
        dataset = windows(0).batch(batch_size)
    return dataset.map(lambda ids: {"token_ids": ids, "padding_mask": tf.ones_like(ids)},
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def lm_dataset_fn(stream, *, seq_length, global_batch_size, seed=None):
    """A training dataset_fn for kerasllm.training.loop.train: each input pipeline
    reads its own contiguous share of the stream (disjoint text), with its own seed.

    Returns:
      Callable[[tf.distribute.InputContext], tf.data.Dataset] (see lm_dataset).
    """
    def dataset_fn(input_context):
        pipeline, pipelines = input_context.input_pipeline_id, input_context.num_input_pipelines
        share = len(stream) // pipelines
        return lm_dataset(stream[pipeline * share:(pipeline + 1) * share],
                          seq_length=seq_length,
                          batch_size=input_context.get_per_replica_batch_size(global_batch_size),
                          training=True, seed=None if seed is None else seed + pipeline)

    return dataset_fn
