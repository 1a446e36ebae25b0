"""Next-sentence pairs stored as TFRecords, masked when read.

Writing the pairs once saves re-tokenizing a large corpus for every run; the
masked-LM masks are still drawn at read time, so every epoch sees new ones. The
pairs are read into memory, so that batch k is computed from (seed, k) alone.
Record format (tf.train.Example):
  segment_a: int64 list, segment_b: int64 list (token ids, no special tokens),
  is_next: int64 (1 = B follows A in the document, 0 = B from another document).
"""
import functools
import os
import tempfile

import numpy as np
import tensorflow as tf

from kerasllm.data.batching import PackedExamples, sharded_dataset_fn, shuffled_batches
from kerasllm.data.bert_pretraining import (check_settings, make_nsp_pairs, masked_batches,
                                            tokenize_documents)
from kerasllm.errors import DataError

_FEATURES = {
    "segment_a": tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64),
    "segment_b": tf.io.RaggedFeature(tf.int64, row_splits_dtype=tf.int64),
    "is_next": tf.io.FixedLenFeature([], tf.int64),
}
# Records parsed at a time when the files are read.
_RECORDS_PER_BLOCK = 4096


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


def read_pretraining_pairs(pattern):
    """Every pair in the TFRecord files matching `pattern` (sorted by name), read
    into memory (a resumed run must reach any pair without reading the ones before
    it; ~4 bytes a token).

    Returns:
      PackedExamples with columns segment_a, segment_b int32 [n, (tokens)] and
      is_next int32 [n].
    Raises:
      DataError: no file matches `pattern`, or the files hold no pairs.
    """
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise DataError(f"No TFRecord files match {pattern!r}; write them with "
                        "write_pretraining_tfrecords or fix the path.")
    blocks = [tf.io.parse_example(records, _FEATURES)
              for records in tf.data.TFRecordDataset(files).batch(_RECORDS_PER_BLOCK)]
    if not blocks:
        raise DataError(f"The TFRecord files matching {pattern!r} hold no pairs.")
    return PackedExamples({name: tf.cast(tf.concat([block[name] for block in blocks], axis=0),
                                         tf.int32) for name in _FEATURES})


def pairs_dataset(pairs, tokenizer, *, max_seq_length, batch_size, max_predictions_per_seq=20,
                  mask_rate=0.15, whole_word_masking=False, seed=None, repeat=True,
                  start_batch=0):
    """Pretraining batches of `pairs` (from read_pretraining_pairs), shuffled anew
    every epoch and masked anew for every batch, batch k a pure function of
    (seed, k) (see kerasllm.data.batching; seed None acts as 0); the same batch
    dict as pretraining_dataset (same packing and masking code). Pairs longer than
    max_seq_length are trimmed round-robin. `repeat`: endless epochs, or one.

    Raises:
      DataError: bad settings, or fewer pairs than a batch.
    """
    check_settings(max_seq_length, batch_size, max_predictions_per_seq, mask_rate)
    columns = pairs.columns
    batches = shuffled_batches(len(pairs), batch_size, seed=seed, start_batch=start_batch,
                               epochs=None if repeat else 1).map(
        lambda number, rows: (number, {
            "segments": tuple(tf.gather(columns[name], rows)
                              for name in ("segment_a", "segment_b")),
            "next_sentence_labels": tf.gather(columns["is_next"], rows)}))
    return masked_batches(batches, tokenizer, max_seq_length=max_seq_length, seed=seed or 0,
                          max_predictions_per_seq=max_predictions_per_seq,
                          mask_rate=mask_rate, whole_word_masking=whole_word_masking)


def read_pretraining_tfrecords(pattern, tokenizer, **kwargs):
    """pairs_dataset of the pairs in the TFRecord files matching `pattern`
    (written by write_pretraining_tfrecords); keyword arguments are pairs_dataset's."""
    return pairs_dataset(read_pretraining_pairs(pattern), tokenizer, **kwargs)


def tfrecords_dataset_fn(pattern, tokenizer, *, global_batch_size, seed=None, **kwargs):
    """A training dataset_fn for kerasllm.training.loop.train over TFRecords: the
    pairs are read once, here, and each input pipeline takes every
    num_input_pipelines-th one with a seed of its own (see
    kerasllm.data.batching.sharded_dataset_fn). Other keyword arguments are those
    of pairs_dataset.

    Returns:
      Callable[[tf.distribute.InputContext, int], tf.data.Dataset]: the
      pipeline's batches from `start_batch` on.
    """
    return sharded_dataset_fn(read_pretraining_pairs(pattern),
                              functools.partial(pairs_dataset, tokenizer=tokenizer, **kwargs),
                              global_batch_size=global_batch_size, seed=seed)
