"""Batches of variable-length BERT inputs for fine-tuning: examples of similar
length batched together, and no more padding than the longest one needs.

A batch is as long as its longest example rounded up to a multiple of
`length_multiple` tokens (at most max_seq_length): padding only costs compute,
the model ignores it. Training batches are drawn from length buckets
`length_multiple` tokens wide, and evaluation batches from the examples sorted by
length, so a batch of short sentences costs about what its real tokens cost.
"""
import numpy as np
import tensorflow as tf

from kerasllm.errors import DataError
from kerasllm.tokenizers.segment_packing import pad_to_length

# A step compiled with XLA is compiled once per batch shape, so it wants few
# lengths; a traced step takes any length, and narrower buckets pad less (on the
# RT sentences, ~3% of the tokens fed to the model are padding at 2, ~15% at 8).
LENGTH_MULTIPLE_COMPILED = 8
LENGTH_MULTIPLE_TRACED = 2
SEQUENCE_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def trim_padding(inputs, sequence_features=SEQUENCE_INPUTS,
                 length_multiple=LENGTH_MULTIPLE_COMPILED):
    """Drops the padding columns no example of the batch uses, keeping the length a
    multiple of `length_multiple`.

    inputs: dict with token_ids, segment_ids, padding_mask int32 [B, S] and any
    other `sequence_features` [B, S] (trimmed alike); everything else, e.g.
    labels [B], is passed through. Returns the same with [B, S'], S' <= S.
    """
    longest = tf.reduce_max(tf.reduce_sum(inputs["padding_mask"], axis=1))
    length = tf.minimum((longest + length_multiple - 1) // length_multiple * length_multiple,
                        tf.shape(inputs["padding_mask"])[1])
    return {name: value[:, :length] if name in sequence_features else value
            for name, value in inputs.items()}


def bucketed_batches(columns, lengths, to_model_inputs, *, batch_size, max_seq_length,
                     training, seed=None, bucket_width=LENGTH_MULTIPLE_COMPILED):
    """tf.data batches of `columns`, turned into model inputs by `to_model_inputs`.

    Args:
      columns: a dict of tensors (or lists) with one row per example; ragged
        columns batch as ragged [B, (...)].
      lengths: int [n], tokens per example (its length bucket, or its place in
        evaluation order).
      to_model_inputs: batch of columns -> dict of model inputs, in graph ops.
      batch_size: B.
      max_seq_length: S; longer examples share the last bucket.
      training: True: shuffled anew every epoch, repeated forever, full batches
        only, each drawn from one length bucket; False: one pass in order, the
        last batch possibly smaller.
      seed: shuffle seed (training only).
      bucket_width: tokens per length bucket (training only).
    Returns:
      tf.data.Dataset of `to_model_inputs` results, prefetched.
    """
    num_examples = len(lengths)
    if not num_examples:
        raise DataError("no examples to batch")
    if training and num_examples < batch_size:
        raise DataError(f"{num_examples} training examples cannot fill one batch of "
                        f"{batch_size}; use a smaller batch size")
    if not training:
        # Scores do not depend on the order; padding every batch of a random mix of
        # lengths to its longest example would double the cost of evaluation.
        order = np.argsort(np.asarray(lengths), kind="stable")
        columns = {name: tf.gather(value, order) for name, value in columns.items()}
        lengths = np.asarray(lengths)[order]
    dataset = tf.data.Dataset.from_tensor_slices((columns, tf.constant(lengths, tf.int64)))
    if training:
        dataset = dataset.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.repeat().group_by_window(
            key_func=lambda columns, length: tf.minimum(
                length, max_seq_length) // bucket_width,
            reduce_func=lambda key, window: window.batch(batch_size, drop_remainder=True),
            window_size=batch_size)
    else:
        dataset = dataset.batch(batch_size)
    return dataset.map(lambda columns, lengths: to_model_inputs(columns),
                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def sharded_dataset_fn(examples, make_dataset, *, global_batch_size, seed=None):
    """A training dataset_fn for kerasllm.training.loop.train.

    Each input pipeline reads every num_input_pipelines-th example (disjoint
    shards), shuffles with its own seed and batches
    input_context.get_per_replica_batch_size(global_batch_size) examples.

    Args:
      examples: a list, or anything else with len() and [start::step] slicing
        (e.g. PackedExamples).
      make_dataset: (shard of examples, batch size, seed or None) -> the shard's
        repeating training tf.data.Dataset.
    Returns:
      Callable[[tf.distribute.InputContext], tf.data.Dataset].
    """
    def dataset_fn(input_context):
        pipeline = input_context.input_pipeline_id
        shard = examples[pipeline::input_context.num_input_pipelines]
        return make_dataset(shard, input_context.get_per_replica_batch_size(global_batch_size),
                            None if seed is None else seed + pipeline)

    return dataset_fn


class PackedExamples:
    """Examples tokenized and packed ("[CLS] ... [SEP]", unpadded) ahead of training.

    `columns` holds one row per example: token_ids, segment_ids int32 [n, (L)],
    plus per-token values ragged [n, (L)] (e.g. labels) and per-example values
    [n] (e.g. start_positions). Like a list, it has len() and [start::step].
    """

    def __init__(self, columns):
        self.columns = dict(columns)

    def __len__(self):
        return int(self.columns["token_ids"].nrows())

    def __getitem__(self, rows):
        if not isinstance(rows, slice):
            raise TypeError(f"PackedExamples takes a slice, got {type(rows).__name__}")
        return PackedExamples({name: value[rows] for name, value in self.columns.items()})

    def where(self, keep):
        """The examples whose entry of `keep` (bool [n]) is True."""
        return PackedExamples({name: tf.ragged.boolean_mask(value, keep)
                               for name, value in self.columns.items()})


def pad_packed(batch, *, pad_id, max_seq_length, length_multiple=LENGTH_MULTIPLE_COMPILED):
    """A batch of PackedExamples columns -> model inputs.

    token_ids (padded with pad_id), segment_ids and every other ragged column
    (padded with 0) become dense [B, S'], S' the longest row rounded up to a
    multiple of `length_multiple` (at most max_seq_length); padding_mask
    int32 [B, S'] is added; dense columns pass through.
    """
    inputs = pad_to_length(batch["token_ids"], batch["segment_ids"], max_seq_length, pad_id)
    per_token = [name for name, value in batch.items()
                 if isinstance(value, tf.RaggedTensor) and name not in inputs]
    for name, value in batch.items():
        if name not in inputs:
            inputs[name] = value.to_tensor(0, shape=[None, max_seq_length]) \
                if name in per_token else value
    return trim_padding(inputs, sequence_features=(*SEQUENCE_INPUTS, *per_token),
                        length_multiple=length_multiple)


def packed_dataset(examples, *, pad_id, max_seq_length, batch_size, training, seed=None,
                   length_multiple=LENGTH_MULTIPLE_COMPILED):
    """tf.data batches of PackedExamples (see bucketed_batches for `training`),
    `length_multiple` tokens apart in length (see trim_padding).

    Returns:
      tf.data.Dataset of dicts: token_ids, segment_ids, padding_mask int32 [B, S']
      and the other columns, per-token ones [B, S'] (see pad_packed).
    """
    def to_model_inputs(batch):
        return pad_packed(batch, pad_id=pad_id, max_seq_length=max_seq_length,
                          length_multiple=length_multiple)

    return bucketed_batches(examples.columns, examples.columns["token_ids"].row_lengths(),
                            to_model_inputs, batch_size=batch_size,
                            max_seq_length=max_seq_length, training=training, seed=seed,
                            bucket_width=length_multiple)


def packed_dataset_fn(examples, *, pad_id, max_seq_length, global_batch_size, seed=None,
                      length_multiple=LENGTH_MULTIPLE_COMPILED):
    """A training dataset_fn of PackedExamples (see sharded_dataset_fn)."""
    def make_dataset(shard, batch_size, shard_seed):
        return packed_dataset(shard, pad_id=pad_id, max_seq_length=max_seq_length,
                              batch_size=batch_size, training=True, seed=shard_seed,
                              length_multiple=length_multiple)

    return sharded_dataset_fn(examples, make_dataset, global_batch_size=global_batch_size,
                              seed=seed)
