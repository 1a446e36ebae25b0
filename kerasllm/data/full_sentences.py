"""RoBERTa's FULL-SENTENCES inputs: masked-LM pretraining without next-sentence pairs.

Every window is "[CLS] sentences [SEP]": whole sentences taken in order from the
corpus until the next one would not fit, crossing from one document into the
next with a [SEP] between them (RoBERTa, section 4.2); a sentence longer than a
window is cut into window-sized pieces. There is no segment B and no
next-sentence label, so segment_ids are all 0. Masks are drawn afresh for every
batch (dynamic masking) by the masking code BERT's pairs use.

Position (see kerasllm.data.batching). Epoch e packs the documents in an order
drawn from (seed, e), so its windows differ from every other epoch's; it gives N
batches, N the same for every epoch: a window holds at most W = S - 2 tokens, so
any order gives at least ceil(T / W) windows, T the corpus's tokens plus one
separator between each two documents; N = ceil(T / W) // B. Batch k is batch
k % N of epoch k // N, its masks drawn from (seed, k).
"""
import functools

import numpy as np
import tensorflow as tf

from kerasllm.data.batching import (PAIRS, batches_from, epoch_batches, sharded_dataset_fn,
                                    stateless_seed)
from kerasllm.data.bert_pretraining import check_settings, masked_batches, tokenize_documents
from kerasllm.errors import DataError

# Room taken by [CLS] window [SEP].
NUM_SPECIAL_TOKENS = 2


def pack_full_sentences(tokenized_documents, max_seq_length, document_order, separator_id):
    """Packs whole sentences into windows of at most W = max_seq_length - 2 tokens.

    Args:
      tokenized_documents: list of documents; each a list of sentences; each a
        1-D int array of token ids.
      max_seq_length: S, including [CLS] and the final [SEP].
      document_order: the order to read the documents in (a permutation).
      separator_id: the token put between two documents inside one window.

    Returns:
      list of int32 [n] windows, 1 <= n <= W, without [CLS] and the final [SEP].
    """
    room = max_seq_length - NUM_SPECIAL_TOKENS
    windows, current = [], []
    for number, doc in enumerate(document_order):
        for index, sentence in enumerate(tokenized_documents[doc]):
            starts_document = number > 0 and index == 0
            for start in range(0, len(sentence), room):
                piece = sentence[start:start + room]
                separator = [np.array([separator_id])] if starts_document and current else []
                if sum(map(len, current + separator)) + len(piece) > room:
                    windows.append(np.concatenate(current))
                    current, separator = [], []
                current += separator + [piece]
                starts_document = False
    if current:
        windows.append(np.concatenate(current))
    return [window.astype(np.int32) for window in windows]


def windows_per_draw(tokenized_documents, max_seq_length):
    """The fewest windows pack_full_sentences gives for any document order."""
    tokens = sum(len(sentence) for document in tokenized_documents for sentence in document)
    separators = max(len(tokenized_documents) - 1, 0)
    return -(-(tokens + separators) // (max_seq_length - NUM_SPECIAL_TOKENS))


def window_batches(tokenized_documents, *, max_seq_length, batch_size, separator_id, seed=None,
                   repeat=True, start_batch=0):
    """tf.data.Dataset of (batch number int64 [], {"segments": (windows,)}),
    windows int32 ragged [B, (n)] without [CLS]/[SEP], from batch `start_batch` on
    (see the module docstring; seed None acts as 0).

    Raises:
      DataError: the corpus gives fewer windows than a batch.
    """
    documents = [[s for s in document if len(s)] for document in tokenized_documents]
    documents = [document for document in documents if document]
    fewest = windows_per_draw(documents, max_seq_length) if documents else 0
    batches_per_epoch = fewest // batch_size
    if not batches_per_epoch:
        raise DataError(f"The corpus fills as few as {fewest} windows of {max_seq_length} "
                        f"tokens, fewer than batch_size={batch_size}; use more text, a "
                        "smaller batch or a shorter max_seq_length.")
    seed = seed or 0

    def draw(order_seed):
        rng = np.random.default_rng(order_seed.astype(np.uint32))
        windows = pack_full_sentences(documents, max_seq_length, rng.permutation(len(documents)),
                                      separator_id)
        return np.concatenate(windows), np.array([len(w) for w in windows], np.int64)

    def batches_of_epoch(epoch):
        ids, lengths = tf.numpy_function(draw, [stateless_seed(seed, epoch, PAIRS)],
                                         [tf.int32, tf.int64], stateful=False)
        windows = tf.RaggedTensor.from_row_lengths(tf.ensure_shape(ids, [None]),
                                                   tf.ensure_shape(lengths, [None]))
        rows = epoch_batches(windows.nrows(), batch_size, batches_per_epoch, seed, epoch)
        return tf.gather(windows, rows)

    def with_static_batch_size(number, windows):
        return number, {"segments": (tf.RaggedTensor.from_row_lengths(
            windows.flat_values, tf.ensure_shape(windows.row_lengths(), [batch_size])),)}

    return batches_from(start_batch, batches_per_epoch, batches_of_epoch,
                        None if repeat else 1).map(with_static_batch_size)


def padded_windows(tokenized_documents, tokenizer, *, max_seq_length, batch_size, seed=None,
                   repeat=True, start_batch=0):
    """tf.data.Dataset of (batch number int64 [], batch): window_batches as model
    inputs without masks, token_ids, segment_ids (all 0), padding_mask int32 [B, S],
    for objectives that read the text as it is (kerasllm.data.permutation_lm)."""
    check_settings(max_seq_length, batch_size, max_predictions_per_seq=1, mask_rate=0.15)
    batches = window_batches(tokenized_documents, max_seq_length=max_seq_length,
                             batch_size=batch_size, separator_id=tokenizer.sep_id, seed=seed,
                             repeat=repeat, start_batch=start_batch)
    return batches.map(lambda number, batch: (number, {
        name: tf.ensure_shape(value, [batch_size, max_seq_length])
        for name, value in tokenizer.pack(list(batch["segments"]), max_seq_length).items()}))


def dataset_from_tokenized(tokenized_documents, tokenizer, *, max_seq_length, batch_size,
                           max_predictions_per_seq=20, mask_rate=0.15, whole_word_masking=False,
                           seed=None, repeat=True, start_batch=0):
    """Masked-LM batches of full-sentence windows of documents already passed
    through tokenize_documents: the dict of kerasllm.data.bert_pretraining's
    pretraining_dataset without next_sentence_labels (segment_ids all 0)."""
    check_settings(max_seq_length, batch_size, max_predictions_per_seq, mask_rate)
    batches = window_batches(tokenized_documents, max_seq_length=max_seq_length,
                             batch_size=batch_size, separator_id=tokenizer.sep_id, seed=seed,
                             repeat=repeat, start_batch=start_batch)
    return masked_batches(batches, tokenizer, max_seq_length=max_seq_length, seed=seed or 0,
                          max_predictions_per_seq=max_predictions_per_seq, mask_rate=mask_rate,
                          whole_word_masking=whole_word_masking)


def pretraining_dataset_fn(documents, tokenizer, *, global_batch_size, seed=None, **kwargs):
    """A training dataset_fn for kerasllm.training.loop.train: the corpus tokenized
    once, here; each input pipeline packs its own disjoint run of documents
    (kerasllm.data.batching.sharded_dataset_fn). Other keyword arguments are
    dataset_from_tokenized's."""
    return sharded_dataset_fn(
        tokenize_documents(documents, tokenizer),
        functools.partial(dataset_from_tokenized, tokenizer=tokenizer, **kwargs),
        global_batch_size=global_batch_size, seed=seed, contiguous=True)
