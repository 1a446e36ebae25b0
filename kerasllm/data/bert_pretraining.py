"""BERT pretraining examples: next-sentence pairs plus dynamic masked-LM masking.

Data flow:
  documents (lists of text lines)
    -> tokenize_documents (once)          list of documents of token-id sentences
    -> make_nsp_pairs (every epoch)       (A, B, is_next) with |A|+|B| <= S-3
    -> shuffle, batch                     ragged [B, (n)]
    -> make_masking_fn                    fresh 80/10/10 masks for every batch
    -> pad                                fixed-shape batch dict
The masking step is shared with the TFRecord reader.

Position. The stream is a pure function of (seed, batch number), so a resumed run
starts at any batch without reading the ones before (`start_batch`, see
kerasllm.training.input_position): epoch e's pairs are drawn from (seed, e) alone, and it
is the first N * B of them in an order also drawn from (seed, e), N the same for
every epoch: pairs_per_draw // B (a draw's pairs vary in number, never below
pairs_per_draw). Batch k is batch k % N of epoch k // N, its masks drawn from
(seed, k) by stateless random ops.
"""
import functools

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from kerasllm.data.batching import (MASKS, PAIRS, batches_from, epoch_batches,
                                    sharded_dataset_fn, stateless_seed)
from kerasllm.errors import DataError
from kerasllm.tokenizers.segment_packing import pad_to_length
from kerasllm.tokenizers.wordpiece import SUFFIX_INDICATOR

# Room taken by [CLS] A [SEP] B [SEP].
NUM_SPECIAL_TOKENS = 3
# The random streams of one batch's masks (see _masking_seeds).
_SELECTION, _CHOICE, _RANDOM_IDS = range(3)


def tokenize_documents(documents, tokenizer, batch_size=4096):
    """Tokenizes every line once.

    Args:
      documents: list of documents, each a list of text lines.
      tokenizer: a WordPieceTokenizer.

    Returns:
      list of documents, each a list of int32 numpy arrays (one per line);
      lines without tokens and documents without lines are dropped.
    """
    lines = [line for document in documents for line in document]
    if not lines:
        return []
    tokenized = tf.data.Dataset.from_tensor_slices(lines).batch(batch_size).map(
        tokenizer.tokenize, num_parallel_calls=tf.data.AUTOTUNE)
    values, lengths = [], []
    for batch in tokenized:
        values.append(batch.flat_values.numpy())
        lengths.append(batch.row_lengths().numpy())
    lengths = np.concatenate(lengths)
    sentences = np.split(np.concatenate(values), np.cumsum(lengths)[:-1])
    result, start = [], 0
    for document in documents:
        kept = [s for s in sentences[start:start + len(document)] if len(s)]
        start += len(document)
        if kept:
            result.append(kept)
    return result


def truncated_lengths(length_a, length_b, max_tokens):
    """Lengths after removing tokens one at a time from the longer segment.

    The shorter segment is kept whole while possible; when both are long each
    ends with about max_tokens / 2 (A gets the odd token). Both keep >= 1 token
    (assuming max_tokens >= 2 and both are non-empty).
    """
    if length_a + length_b <= max_tokens:
        return length_a, length_b
    shorter = min(length_a, length_b)
    if 2 * shorter <= max_tokens:
        kept_shorter, kept_longer = shorter, max_tokens - shorter
        return (kept_longer, kept_shorter) if length_a > length_b else (kept_shorter,
                                                                        kept_longer)
    return (max_tokens + 1) // 2, max_tokens // 2


def _chunk_documents(lengths, max_tokens, rng, short_seq_prob):
    """Cuts every document into runs of consecutive sentences (~one example each).

    A run ends once it holds >= 2 sentences and reaches its target length, or at
    the end of the document; a one-sentence run only occurs at a document's end.
    With probability short_seq_prob the target is shorter than the maximum, so
    the model also sees short inputs (as fine-tuning tasks have).

    Returns:
      list of (document index, first sentence, end sentence, target length).
    """
    chunks = []
    for doc in rng.permutation(len(lengths)):
        sentence_lengths = lengths[doc]
        start, total = 0, 0
        target = _draw_target(max_tokens, rng, short_seq_prob)
        for i, length in enumerate(sentence_lengths):
            total += length
            if i == len(sentence_lengths) - 1 or (total >= target and i > start):
                chunks.append((doc, start, i + 1, target))
                start, total = i + 1, 0
                target = _draw_target(max_tokens, rng, short_seq_prob)
    return chunks


def _draw_target(max_tokens, rng, short_seq_prob):
    if rng.random() < short_seq_prob:
        return int(rng.integers(2, max_tokens + 1))
    return max_tokens


def _random_span(document, min_tokens, rng):
    """Consecutive sentences from a random start until >= min_tokens (at least one)."""
    start = int(rng.integers(len(document)))
    end, total = start, 0
    while end < len(document) and (end == start or total < min_tokens):
        total += len(document[end])
        end += 1
    return np.concatenate(document[start:end])


def make_nsp_pairs(tokenized_documents, max_seq_length, rng, short_seq_prob=0.1):
    """One epoch of next-sentence-prediction pairs.

    Each document is cut into runs of consecutive sentences. A run becomes
    segment A = its first k sentences (k random) and, for label 1, segment
    B = its remaining sentences (the true continuation); for label 0, B is a
    random span of a different document. A run of a single sentence (a
    one-sentence document, or a document's last sentence) can only give
    label 0, so the other runs get label 1 a bit more often than half the time
    to keep the overall balance at 50% (possible while at least half the runs
    have two sentences). Pairs are then trimmed so that [CLS] A [SEP] B [SEP]
    fits max_seq_length.

    Args:
      tokenized_documents: list of documents; each a list of sentences; each a
        sequence of token ids (list or 1-D numpy array).
      max_seq_length: S, including the 3 special tokens.
      rng: numpy.random.Generator (advances; call again for another draw).
      short_seq_prob: chance that a run aims for a random length below S.

    Returns:
      list of (segment_a int32 [n_a], segment_b int32 [n_b], is_next int) with
      n_a, n_b >= 1 and n_a + n_b <= S - 3.
    """
    documents, lengths, max_tokens = _pair_material(tokenized_documents, max_seq_length)
    chunks = _chunk_documents(lengths, max_tokens, rng, short_seq_prob)
    num_with_next = sum(end - start >= 2 for _, start, end, _ in chunks)
    next_probability = min(1.0, 0.5 * len(chunks) / max(num_with_next, 1))
    pairs = []
    for doc, start, end, target in chunks:
        document = documents[doc]
        can_continue = end - start >= 2
        split = int(rng.integers(start + 1, end)) if can_continue else end
        segment_a = np.concatenate(document[start:split])
        if can_continue and rng.random() < next_probability:
            segment_b, is_next = np.concatenate(document[split:end]), 1
        else:
            # A uniformly random other document.
            other = (doc + int(rng.integers(1, len(documents)))) % len(documents)
            segment_b = _random_span(documents[other], target - len(segment_a), rng)
            is_next = 0
        length_a, length_b = truncated_lengths(len(segment_a), len(segment_b), max_tokens)
        pairs.append((segment_a[:length_a].astype(np.int32),
                      segment_b[:length_b].astype(np.int32), is_next))
    return pairs


def _pair_material(tokenized_documents, max_seq_length):
    """(documents, their sentence lengths, the tokens a pair may hold): the
    documents' non-empty sentences, documents without any dropped."""
    max_tokens = max_seq_length - NUM_SPECIAL_TOKENS
    if max_tokens < 2:
        raise DataError(f"max_seq_length={max_seq_length} leaves no room for two segments; "
                        "next-sentence pairs need at least 5 (use 128 or so).")
    documents = [[s for s in document if len(s)] for document in tokenized_documents]
    documents = [document for document in documents if document]
    if len(documents) < 2:
        raise DataError(
            f"The corpus has {len(documents)} non-empty document(s); next-sentence "
            "prediction needs at least two (separate documents with a blank line).")
    return documents, [[len(s) for s in document] for document in documents], max_tokens


def pairs_per_draw(tokenized_documents, max_seq_length):
    """The fewest pairs a make_nsp_pairs draw gives: the runs of sentences when
    every run aims for the full length. A shorter target only ends a run sooner,
    so the runs after it start no later and a draw never has fewer runs."""
    _, lengths, max_tokens = _pair_material(tokenized_documents, max_seq_length)
    return len(_chunk_documents(lengths, max_tokens, np.random.default_rng(0),
                                short_seq_prob=0.0))


class _WordSelector(tf_text.RandomItemSelector):
    """Selects random whole words covering ~selection_rate of the maskable tokens,
    drawn by stateless random ops from `seed` (int [2]).

    Words are taken in random order while their pieces fit min(max_tokens,
    ceil(rate * maskable tokens)), so every selected word is predicted in full
    (tf_text.RandomItemSelector counts and caps in words, which with multi-piece
    words can exceed the prediction slots). Where every word is one token this is
    RandomItemSelector's choice.
    Input: int [batch, (words), (pieces)]; output: bool [batch, (words)].
    """

    def __init__(self, selection_rate, max_tokens, unselectable_ids, seed):
        super().__init__(max_selections_per_batch=max_tokens, selection_rate=selection_rate,
                         unselectable_ids=unselectable_ids)
        self.seed = seed

    def get_selection_mask(self, input_ids, axis):
        selectable = self.get_selectable(input_ids, axis)
        word_lengths = tf.cast(input_ids.row_lengths(axis=2), tf.int32)
        maskable_lengths = tf.where(selectable, word_lengths, 0)
        budget = tf.minimum(
            tf.cast(tf.math.ceil(self.selection_rate * tf.cast(
                tf.reduce_sum(maskable_lengths, axis=1), tf.float32)), tf.int32),
            self.max_selections_per_batch)
        dense_selectable = selectable.to_tensor(False)
        # Non-selectable words and padding sort last (priority 2 > any uniform draw).
        priority = tf.where(dense_selectable, tf.random.stateless_uniform(
            tf.shape(dense_selectable), self.seed), 2.0)
        order = tf.argsort(priority, axis=1)
        sorted_lengths = tf.gather(maskable_lengths.to_tensor(0), order, batch_dims=1)
        sorted_selectable = tf.gather(dense_selectable, order, batch_dims=1)
        chosen_sorted = sorted_selectable & (
            tf.cumsum(sorted_lengths, axis=1) <= budget[:, tf.newaxis])
        chosen = tf.gather(chosen_sorted, tf.argsort(order, axis=1), batch_dims=1)
        return tf.RaggedTensor.from_tensor(chosen, lengths=selectable.row_lengths())


class _MaskValues(tf_text.MaskValuesChooser):
    """BERT's 80% [MASK], 10% a uniformly random id, 10% unchanged for each
    selected token, drawn by stateless random ops from `seeds` (choice, random
    ids: int [2] each)."""

    def __init__(self, vocab_size, mask_id, seeds):
        super().__init__(vocab_size, mask_id, mask_token_rate=0.8, random_token_rate=0.1)
        self.seeds = seeds

    def get_mask_values(self, masked_lm_ids):
        ids = masked_lm_ids.flat_values
        choice_seed, random_ids_seed = self.seeds
        draw = tf.random.stateless_uniform(tf.shape(ids), choice_seed)
        random_ids = tf.random.stateless_uniform(tf.shape(ids), random_ids_seed, minval=0,
                                                 maxval=self.vocab_size, dtype=ids.dtype)
        return masked_lm_ids.with_flat_values(tf.where(
            draw < 0.8, tf.cast(self.mask_token, ids.dtype),
            tf.where(draw < 0.9, random_ids, ids)))


def _group_words(token_ids, is_continuation):
    """int [batch, (tokens)] -> [batch, (words), (pieces)], "##" pieces join the word before."""
    flat = token_ids.flat_values
    position_in_row = tf.range(tf.size(flat, out_type=tf.int64)) - tf.repeat(
        token_ids.row_starts(), token_ids.row_lengths())
    starts_word = tf.logical_not(tf.gather(is_continuation, flat)) | tf.equal(position_in_row, 0)
    words = tf.RaggedTensor.from_row_starts(flat, tf.where(starts_word)[:, 0])
    words_per_row = tf.math.unsorted_segment_sum(
        tf.cast(starts_word, tf.int64), token_ids.value_rowids(), token_ids.nrows())
    return tf.RaggedTensor.from_row_lengths(words, words_per_row)


def make_masking_fn(tokenizer, *, max_seq_length, max_predictions_per_seq=20, mask_rate=0.15,
                    whole_word_masking=False):
    """A TF function (segments, seed, next_sentence_labels=None) -> the pretraining batch dict.

    segments: a tuple of 1 or 2 int32 ragged [B, (n)] ("[CLS] a [SEP]" or "[CLS] a
    [SEP] b [SEP]"); seed: int [2], the seed of this batch's masks (the same seed
    gives the same masks); next_sentence_labels: int32 [B] for MLM+NSP batches,
    None for masked-LM-only ones (the batch then has no such feature).
    Selection never picks [CLS], [SEP] or [PAD]; the selected tokens become
    [MASK] 80% of the time, a uniformly random vocabulary id 10%, and stay
    unchanged 10%.
    """
    unselectable_ids = [tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id]
    # Without whole-word masking every token is a word of its own.
    is_continuation = tf.constant(
        [whole_word_masking and token.startswith(SUFFIX_INDICATOR)
         for token in tokenizer.vocabulary])

    def mask_batch(segments, seed, next_sentence_labels=None):
        token_ids, segment_ids = tokenizer.join(list(segments), max_seq_length)
        selection, choice, random_ids = (tf.random.experimental.stateless_fold_in(seed, stream)
                                         for stream in (_SELECTION, _CHOICE, _RANDOM_IDS))
        masked_ids, positions, original_ids = tf_text.mask_language_model(
            _group_words(token_ids, is_continuation),
            _WordSelector(mask_rate, max_predictions_per_seq, unselectable_ids, selection),
            _MaskValues(tokenizer.vocab_size, tokenizer.mask_id, (choice, random_ids)), axis=1)
        batch = pad_to_length(masked_ids, segment_ids, max_seq_length, tokenizer.pad_id)
        masked_positions, masked_weights = tf_text.pad_model_inputs(
            tf.cast(positions, tf.int32), max_predictions_per_seq, 0)
        masked_lm_ids, _ = tf_text.pad_model_inputs(original_ids, max_predictions_per_seq, 0)
        batch.update({
            "masked_positions": tf.ensure_shape(masked_positions,
                                                [None, max_predictions_per_seq]),
            "masked_ids": tf.ensure_shape(tf.cast(masked_lm_ids, tf.int32),
                                          [None, max_predictions_per_seq]),
            "masked_weights": tf.ensure_shape(tf.cast(masked_weights, tf.float32),
                                              [None, max_predictions_per_seq]),
        })
        if next_sentence_labels is not None:
            batch["next_sentence_labels"] = tf.cast(next_sentence_labels, tf.int32)
        # Ragged ops lose the static batch size the inputs have; restore it so
        # every output shape is fully defined.
        rows = (segments[0] if next_sentence_labels is None else next_sentence_labels).shape[:1]
        return {name: tf.ensure_shape(value, rows.concatenate(value.shape[1:]))
                for name, value in batch.items()}

    return mask_batch


def check_settings(max_seq_length, batch_size, max_predictions_per_seq, mask_rate):
    """Raises DataError for settings no pretraining batch can be made with."""
    if max_seq_length < 2 + NUM_SPECIAL_TOKENS:
        raise DataError(f"max_seq_length={max_seq_length} is too small for [CLS] A [SEP] B "
                        "[SEP]; use at least 5 (BERT uses 128 or 512).")
    if batch_size < 1:
        raise DataError(f"batch_size must be positive, got {batch_size}.")
    if max_predictions_per_seq < 1:
        raise DataError(f"max_predictions_per_seq must be positive, got "
                        f"{max_predictions_per_seq}.")
    if not 0.0 < mask_rate <= 1.0:
        raise DataError(f"mask_rate must be in (0, 1], got {mask_rate}.")


def masked_batches(numbered_batches, tokenizer, *, max_seq_length, seed,
                   max_predictions_per_seq=20, mask_rate=0.15, whole_word_masking=False):
    """Numbered batches of segments -> pretraining batch dicts, packed and masked
    (see make_masking_fn), batch k's masks drawn from (seed, k); prefetched.

    numbered_batches: tf.data.Dataset of (batch number int64 [], batch), batch a
    dict of make_masking_fn's arguments: "segments" (a tuple of int32 ragged
    [B, (n)]) and, for MLM+NSP, "next_sentence_labels" (int32 [B]).
    """
    mask_batch = make_masking_fn(
        tokenizer, max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
        mask_rate=mask_rate, whole_word_masking=whole_word_masking)
    return numbered_batches.map(
        lambda number, batch: mask_batch(seed=stateless_seed(seed, number, MASKS), **batch),
        num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def dataset_from_tokenized(tokenized_documents, tokenizer, *, max_seq_length, batch_size,
                           max_predictions_per_seq=20, mask_rate=0.15, whole_word_masking=False,
                           seed=None, repeat=True, short_seq_prob=0.1, start_batch=0):
    """pretraining_dataset for documents already passed through tokenize_documents."""
    check_settings(max_seq_length, batch_size, max_predictions_per_seq, mask_rate)
    if len(tokenized_documents) < 2:
        raise DataError(
            f"The corpus gives no pretraining examples: it has {len(tokenized_documents)} "
            "document(s) with tokens, and next-sentence pairs need at least two.")
    fewest = pairs_per_draw(tokenized_documents, max_seq_length)
    batches_per_epoch = fewest // batch_size
    if not batches_per_epoch:
        raise DataError(f"An epoch of the corpus gives as few as {fewest} pairs, fewer than "
                        f"batch_size={batch_size}; use more text or a smaller batch.")
    seed = seed or 0

    def draw(pair_seed):
        # SeedSequence takes non-negative entropy; the wrap keeps every bit.
        rng = np.random.default_rng(pair_seed.astype(np.uint32))
        pairs = make_nsp_pairs(tokenized_documents, max_seq_length, rng, short_seq_prob)
        return (np.concatenate([a for a, _, _ in pairs]),
                np.array([len(a) for a, _, _ in pairs], np.int64),
                np.concatenate([b for _, b, _ in pairs]),
                np.array([len(b) for _, b, _ in pairs], np.int64),
                np.array([label for _, _, label in pairs], np.int32))

    def batches_of_epoch(epoch):
        a_ids, a_lengths, b_ids, b_lengths, labels = tf.numpy_function(
            draw, [stateless_seed(seed, epoch, PAIRS)],
            [tf.int32, tf.int64, tf.int32, tf.int64, tf.int32], stateful=False)
        segment_a, segment_b = (
            tf.RaggedTensor.from_row_lengths(tf.ensure_shape(ids, [None]),
                                             tf.ensure_shape(lengths, [None]))
            for ids, lengths in ((a_ids, a_lengths), (b_ids, b_lengths)))
        labels = tf.ensure_shape(labels, [None])
        rows = epoch_batches(tf.size(labels), batch_size, batches_per_epoch, seed, epoch)
        return {"segments": (tf.gather(segment_a, rows), tf.gather(segment_b, rows)),
                "next_sentence_labels": tf.gather(labels, rows)}

    return masked_batches(
        batches_from(start_batch, batches_per_epoch, batches_of_epoch, None if repeat else 1),
        tokenizer, max_seq_length=max_seq_length, seed=seed,
        max_predictions_per_seq=max_predictions_per_seq, mask_rate=mask_rate,
        whole_word_masking=whole_word_masking)


def pretraining_dataset(documents, tokenizer, *, max_seq_length, batch_size,
                        max_predictions_per_seq=20, mask_rate=0.15, whole_word_masking=False,
                        seed=None, repeat=True, short_seq_prob=0.1, start_batch=0):
    """tf.data pipeline of BERT pretraining batches (MLM + NSP).

    The corpus is tokenized once; next-sentence pairs are drawn afresh every
    epoch and masks for every batch, all from `seed` (None acts as 0) and the
    epoch or batch number (see the module docstring).

    Args:
      documents: list of documents, each a list of text lines (read_documents).
      tokenizer: WordPieceTokenizer.
      max_seq_length: S. batch_size: B (per replica when distributed).
      max_predictions_per_seq: P, the most masked tokens per example.
      mask_rate: share of maskable tokens selected for prediction.
      whole_word_masking: select all pieces of a word together.
      repeat: endless stream of epochs (True) or a single epoch.
      short_seq_prob: see make_nsp_pairs.
      start_batch: the first batch to give, at no cost (the batches before it
        are not computed): a resumed run's position.

    Returns:
      tf.data.Dataset of dicts (every shape fixed):
        token_ids, segment_ids, padding_mask: int32 [B, S];
        masked_positions, masked_ids: int32 [B, P]; masked_weights: float32 [B, P];
        next_sentence_labels: int32 [B] (1 = B follows A, 0 = random B).

    Raises:
      DataError: max_seq_length too small, or the corpus gives no examples or
        fewer than a batch an epoch.
    """
    check_settings(max_seq_length, batch_size, max_predictions_per_seq, mask_rate)
    return dataset_from_tokenized(
        tokenize_documents(documents, tokenizer), tokenizer, max_seq_length=max_seq_length,
        batch_size=batch_size, max_predictions_per_seq=max_predictions_per_seq,
        mask_rate=mask_rate, whole_word_masking=whole_word_masking, seed=seed, repeat=repeat,
        short_seq_prob=short_seq_prob, start_batch=start_batch)


def pretraining_dataset_fn(documents, tokenizer, *, global_batch_size, seed=None, **kwargs):
    """A training dataset_fn for kerasllm.training.loop.train.

    The corpus is tokenized once, here. Each input pipeline then reads every
    num_input_pipelines-th document (so pipelines see disjoint data) with a seed
    of its own (see kerasllm.data.batching.sharded_dataset_fn). Other keyword
    arguments are those of pretraining_dataset.

    Returns:
      Callable[[tf.distribute.InputContext, int], tf.data.Dataset]: the
      pipeline's batches from `start_batch` on.
    """
    return sharded_dataset_fn(
        tokenize_documents(documents, tokenizer),
        functools.partial(dataset_from_tokenized, tokenizer=tokenizer, **kwargs),
        global_batch_size=global_batch_size, seed=seed)
