"""Batches, shared by every input pipeline: which examples form batch k of a
training stream, each input pipeline's share of the examples, and length buckets
padded no further than a batch's longest example needs.

Position. A training stream is an endless sequence of epochs of N batches each,
and epoch e's batches are a pure function of (seed, e): batch k is batch k % N
of epoch k // N. A resumed run starts at any batch (`start_batch`, see
kerasllm.training.input_position) by computing the order of that batch's epoch, index
arithmetic over n examples, without reading any batch before it.

An epoch (epoch_batches): the examples in the order of a permutation drawn from
(seed, e); the first N * B of them (so the n % B that sit the epoch out are a
random few, not the longest); with length buckets, those sorted by bucket (stably,
so still shuffled within each) and cut into N consecutive batches whose order a
second permutation from (seed, e) shuffles. A batch then holds one bucket's
examples, except the few (fewer than the buckets) that straddle two neighbours.

Padding. A batch is as long as its longest example rounded up to a multiple of
`length_multiple` tokens (at most max_seq_length): padding only costs compute,
the model ignores it; a step compiled with XLA traces once per batch shape, so it
wants that multiple large. Evaluation batches take the examples sorted by length.
"""
import functools

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
# The random streams drawn from one seed, kept apart by number (see stateless_seed).
EXAMPLE_ORDER, BATCH_ORDER, PAIRS, MASKS, PERMUTATIONS = range(5)


def stateless_seed(seed, number, stream):
    """The seed, int [2], of a stateless random op drawing `stream` (one of the
    numbers above) for `number` (an epoch, a batch) of the stream seeded `seed`."""
    return tf.random.experimental.stateless_fold_in(
        tf.stack([tf.cast(seed, tf.int64), tf.cast(number, tf.int64)]), stream)


def epoch_batches(num_examples, batch_size, num_batches, seed, epoch, bucket_keys=None):
    """int64 [num_batches, B]: the example indices of epoch `epoch`'s batches (see
    the module docstring), num_batches * B <= num_examples.

    Args:
      num_examples: n (an int or an int scalar tensor).
      seed: the stream's seed (int); epoch: int64 scalar tensor.
      bucket_keys: None, or int64 [n], each example's length bucket.
    """
    order = tf.random.experimental.stateless_shuffle(
        tf.range(num_examples, dtype=tf.int64), stateless_seed(seed, epoch, EXAMPLE_ORDER))
    order = order[:num_batches * batch_size]
    if bucket_keys is not None:
        order = tf.gather(order, tf.argsort(tf.gather(bucket_keys, order), stable=True))
    batches = tf.reshape(order, [num_batches, batch_size])
    if bucket_keys is None:
        return batches
    return tf.gather(batches, tf.random.experimental.stateless_shuffle(
        tf.range(num_batches, dtype=tf.int64), stateless_seed(seed, epoch, BATCH_ORDER)))


def batches_from(start_batch, batches_per_epoch, batches_of_epoch, epochs=None):
    """tf.data.Dataset of (batch number int64 [], batch): the stream of epochs
    (endless, or the first `epochs`) from batch `start_batch` on.

    batches_of_epoch: epoch (int64 scalar tensor) -> a nest of tensors (ragged
    ones too) [batches_per_epoch, ...], that epoch's batches in order.
    """
    first_epoch, skipped = divmod(start_batch, batches_per_epoch)

    def numbered(epoch, batches):
        first = tf.where(epoch == first_epoch, tf.constant(skipped, tf.int64), 0)
        # Indexing, not from_tensor_slices, whose ragged slices fail TF's type inference.
        return tf.data.Dataset.range(first, batches_per_epoch).map(
            lambda index: (epoch * batches_per_epoch + index,
                           tf.nest.map_structure(lambda value: value[index], batches)))

    return (tf.data.Dataset.range(first_epoch, epochs or np.iinfo(np.int64).max)
            .map(lambda epoch: (epoch, batches_of_epoch(epoch)))
            .prefetch(1)  # the next epoch's order is ready when this one ends
            .flat_map(numbered))


def shuffled_batches(num_examples, batch_size, *, seed=None, start_batch=0,
                     bucket_keys=None, epochs=None):
    """tf.data.Dataset of (batch number int64 [], example indices int64 [B]) from
    batch `start_batch` on, n // B batches an epoch, endless or `epochs` of them
    (see epoch_batches; seed None acts as 0).

    Raises:
      DataError: fewer than B examples.
    """
    batches_per_epoch = num_examples // batch_size
    if not batches_per_epoch:
        raise DataError(f"{num_examples} training examples cannot fill one batch of "
                        f"{batch_size}; use a smaller batch size")
    keys = None if bucket_keys is None else tf.constant(bucket_keys, tf.int64)
    return batches_from(start_batch, batches_per_epoch, lambda epoch: epoch_batches(
        num_examples, batch_size, batches_per_epoch, seed or 0, epoch, keys), epochs)


def sharded_dataset_fn(examples, make_dataset, *, global_batch_size, seed=None,
                       contiguous=False):
    """A training dataset_fn for kerasllm.training.loop.train: each input pipeline
    takes its own disjoint share of `examples` (every num_input_pipelines-th one,
    or with `contiguous` one unbroken run of them, as a token stream needs),
    seed + input_pipeline_id (seed None acts as 0) and
    input_context.get_per_replica_batch_size(global_batch_size) examples a batch.

    Args:
      examples: anything with len() and [start:stop:step] slicing: a list, a
        numpy array, PackedExamples.
      make_dataset: (share, *, batch_size, seed, start_batch) -> the share's
        training tf.data.Dataset from batch `start_batch` on.
    Returns:
      Callable[[tf.distribute.InputContext, int], tf.data.Dataset].
    """
    def dataset_fn(input_context, start_batch=0):
        pipeline, pipelines = input_context.input_pipeline_id, input_context.num_input_pipelines
        if contiguous:
            size = len(examples) // pipelines
            share = examples[pipeline * size:(pipeline + 1) * size]
        else:
            share = examples[pipeline::pipelines]
        return make_dataset(share,
                            batch_size=input_context.get_per_replica_batch_size(global_batch_size),
                            seed=(seed or 0) + pipeline, start_batch=start_batch)

    return dataset_fn


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
                     training, seed=None, bucket_width=LENGTH_MULTIPLE_COMPILED,
                     start_batch=0):
    """tf.data batches of `columns`, turned into model inputs by `to_model_inputs`.

    Args:
      columns: a dict of tensors (or lists) with one row per example; ragged
        columns batch as ragged [B, (...)].
      lengths: int [n], tokens per example (its length bucket, or its place in
        evaluation order).
      to_model_inputs: batch of columns -> dict of model inputs, in graph ops.
      batch_size: B.
      max_seq_length: S; longer examples share the last bucket.
      training: True: endless epochs of n // B full batches, each drawn from one
        length bucket `bucket_width` tokens wide, a pure function of (seed, batch
        number) (see the module docstring); False: one pass, shortest examples
        first, the last batch possibly smaller.
      seed: training only; None acts as 0.
      bucket_width: tokens per length bucket (training only).
      start_batch: training only: the first batch to give (a resumed run's position).
    Returns:
      tf.data.Dataset of `to_model_inputs` results, prefetched.
    """
    num_examples = len(lengths)
    if not num_examples:
        raise DataError("no examples to batch")
    lengths = np.asarray(lengths)
    columns = {name: value if isinstance(value, tf.RaggedTensor) else tf.convert_to_tensor(value)
               for name, value in columns.items()}
    if training:
        dataset = shuffled_batches(
            num_examples, batch_size, seed=seed, start_batch=start_batch,
            bucket_keys=np.minimum(lengths, max_seq_length) // bucket_width).map(
            lambda number, rows: {name: tf.gather(value, rows)
                                  for name, value in columns.items()})
    else:
        # Scores do not depend on the order; padding every batch of a random mix of
        # lengths to its longest example would double the cost of evaluation.
        order = np.argsort(lengths, kind="stable")
        dataset = tf.data.Dataset.from_tensor_slices(
            {name: tf.gather(value, order) for name, value in columns.items()}
        ).batch(batch_size)
    return dataset.map(to_model_inputs, num_parallel_calls=tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE)


class PackedExamples:
    """Examples tokenized (and packed, e.g. "[CLS] ... [SEP]", unpadded) ahead of
    training, as columns with one row per example.

    Fine-tuning's `columns` hold token_ids, segment_ids int32 [n, (L)], plus
    per-token values ragged [n, (L)] (e.g. labels) and per-example values [n]
    (e.g. start_positions). Like a list, it has len() and [start:stop:step].
    """

    def __init__(self, columns):
        self.columns = dict(columns)

    def __len__(self):
        first = next(iter(self.columns.values()))
        return int(first.nrows() if isinstance(first, tf.RaggedTensor) else first.shape[0])

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
                   length_multiple=LENGTH_MULTIPLE_COMPILED, start_batch=0):
    """tf.data batches of PackedExamples (see bucketed_batches for `training`,
    `seed` and `start_batch`), `length_multiple` tokens apart in length (see
    trim_padding).

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
                            bucket_width=length_multiple, start_batch=start_batch)


def packed_dataset_fn(examples, *, pad_id, max_seq_length, global_batch_size, seed=None,
                      length_multiple=LENGTH_MULTIPLE_COMPILED):
    """A training dataset_fn of PackedExamples (see sharded_dataset_fn)."""
    return sharded_dataset_fn(
        examples, functools.partial(packed_dataset, pad_id=pad_id, max_seq_length=max_seq_length,
                                    training=True, length_multiple=length_multiple),
        global_batch_size=global_batch_size, seed=seed)
