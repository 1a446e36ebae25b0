"""Next-sentence pairs stored as TFRecords, masked when read.

Writing the pairs once saves re-tokenizing a large corpus for every run; the
masked-LM masks are still drawn at read time, so every epoch sees new ones.
Record format (tf.train.Example):
  segment_a: int64 list, segment_b: int64 list (token ids, no special tokens),
  is_next: int64 (1 = B follows A in the document, 0 = B from another document).
"""
import os
import tempfile

import numpy as np
import tensorflow as tf

from kerasllm.errors import DataError
from kerasllm.data.bert_pretraining import batch_and_mask_pairs, make_nsp_pairs, tokenize_documents

_FEATURES = {
    "segment_a": tf.io.RaggedFeature(tf.int64),
    "segment_b": tf.io.RaggedFeature(tf.int64),
    "is_next": tf.io.FixedLenFeature([], tf.int64),
}


def _int64_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _serialize_pair(segment_a, segment_b, is_next):
    return tf.train.Example(features=tf.train.Features(feature={
        "segment_a": _int64_feature(segment_a.tolist()),
        "segment_b": _int64_feature(segment_b.tolist()),
        "is_next": _int64_feature([is_next]),
    })).SerializeToString()


def write_pretraining_tfrecords(documents, tokenizer, path, max_seq_length,
                                num_epochs_of_pairs=1, seed=0, short_seq_prob=0.1):
    """Tokenizes `documents` and writes next-sentence pairs to the TFRecord file `path`.

    Each of the `num_epochs_of_pairs` draws pairs the corpus afresh (different
    splits and random partners), like BERT's "dupe factor". The file appears
    atomically: it is written under a temporary name and renamed when complete.

    Returns:
      number of pairs written.

    Raises:
      DataError: the corpus gives no pairs (fewer than two documents) or
        max_seq_length is too small.
    """
    if num_epochs_of_pairs < 1:
        raise DataError(f"num_epochs_of_pairs must be at least 1, got {num_epochs_of_pairs}.")
    tokenized_documents = tokenize_documents(documents, tokenizer)
    rng = np.random.default_rng(seed)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary_path = tempfile.mkstemp(dir=directory, prefix=".tfrecord-")
    os.close(descriptor)
    count = 0
    try:
        with tf.io.TFRecordWriter(temporary_path) as writer:
            for _ in range(num_epochs_of_pairs):
                for segment_a, segment_b, is_next in make_nsp_pairs(
                        tokenized_documents, max_seq_length, rng, short_seq_prob):
                    writer.write(_serialize_pair(segment_a, segment_b, is_next))
                    count += 1
        os.replace(temporary_path, path)
    except BaseException:
        os.unlink(temporary_path)
        raise
    return count


def _parse_pair(record):
    features = tf.io.parse_single_example(record, _FEATURES)
    return (tf.cast(features["segment_a"], tf.int32), tf.cast(features["segment_b"], tf.int32),
            tf.cast(features["is_next"], tf.int32))


def read_pretraining_tfrecords(pattern, tokenizer, *, max_seq_length, batch_size,
                               max_predictions_per_seq=20, mask_rate=0.15,
                               whole_word_masking=False, seed=None, repeat=True,
                               shuffle_buffer=10_000, shard=(0, 1)):
    """Pretraining batches from TFRecords written by write_pretraining_tfrecords.

    Gives the same batch dict as pretraining_dataset (same packing and masking
    code); pairs longer than max_seq_length are trimmed round-robin.

    Args:
      pattern: glob of TFRecord files (or a single path).
      shard: (index, count): read only every count-th pair, starting at index,
        so parallel input pipelines see disjoint data.
      Others: as for pretraining_dataset.

    Raises:
      DataError: no file matches `pattern`.
    """
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise DataError(f"No TFRecord files match {pattern!r}; write them with "
                        "write_pretraining_tfrecords or fix the path.")
    pairs = tf.data.TFRecordDataset(files).shard(shard[1], shard[0]).map(
        _parse_pair, num_parallel_calls=tf.data.AUTOTUNE)
    if repeat:
        pairs = pairs.repeat()
    return batch_and_mask_pairs(
        pairs, tokenizer, max_seq_length=max_seq_length, batch_size=batch_size,
        max_predictions_per_seq=max_predictions_per_seq, mask_rate=mask_rate,
        whole_word_masking=whole_word_masking, seed=seed, shuffle_buffer=shuffle_buffer)


def tfrecords_dataset_fn(pattern, tokenizer, *, global_batch_size, seed=None, **kwargs):
    """A dataset_fn for tf.distribute.Strategy.distribute_datasets_from_function
    over TFRecords: each input pipeline reads its own shard of the pairs.
    Other keyword arguments are those of read_pretraining_tfrecords."""
    def dataset_fn(input_context):
        return read_pretraining_tfrecords(
            pattern, tokenizer,
            batch_size=input_context.get_per_replica_batch_size(global_batch_size),
            seed=None if seed is None else seed + input_context.input_pipeline_id,
            shard=(input_context.input_pipeline_id, input_context.num_input_pipelines),
            **kwargs)

    return dataset_fn
