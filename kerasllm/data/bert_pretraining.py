"""BERT pretraining examples: next-sentence pairs plus dynamic masked-LM masking.

Data flow:
  documents (lists of text lines)
    -> tokenize_documents (once)          list of documents of token-id sentences
    -> make_nsp_pairs (every epoch)       (A, B, is_next) with |A|+|B| <= S-3
    -> shuffle, batch                     ragged [B, (n)]
    -> join_segments + mask_tokens        fresh 80/10/10 masks on every pass
    -> pad                                fixed-shape batch dict
The packing and masking steps are shared with the TFRecord reader.
"""

import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from kerasllm.errors import DataError
from kerasllm.tokenizers.segment_packing import pad_to_length
from kerasllm.tokenizers.wordpiece import SUFFIX_INDICATOR

# Room taken by [CLS] A [SEP] B [SEP].
NUM_SPECIAL_TOKENS = 3
# Pairs reach tf.data in blocks so the Python->TF hand-off is per block, not per pair.
_PAIRS_PER_BLOCK = 2048


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
      rng: numpy.random.Generator (advances; call again for the next epoch).
      short_seq_prob: chance that a run aims for a random length below S.

    Returns:
      list of (segment_a int32 [n_a], segment_b int32 [n_b], is_next int) with
      n_a, n_b >= 1 and n_a + n_b <= S - 3.
    """
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
    lengths = [[len(s) for s in document] for document in documents]
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


class _WholeWordSelector(tf_text.RandomItemSelector):
    """Selects random whole words covering ~selection_rate of the maskable tokens.

    tf_text.RandomItemSelector counts and caps in words; with multi-piece words
    that can exceed the number of prediction slots. This selector takes words in
    random order while their pieces fit min(max_tokens, ceil(rate * maskable
    tokens)), so every selected word is predicted in full.
    Input: int [batch, (words), (pieces)]; output: bool [batch, (words)].
    """

    def __init__(self, selection_rate, max_tokens, unselectable_ids):
        super().__init__(max_selections_per_batch=max_tokens, selection_rate=selection_rate,
                         unselectable_ids=unselectable_ids)

    def get_selection_mask(self, input_ids, axis):
        selectable = self.get_selectable(input_ids, axis)
        word_lengths = tf.cast(input_ids.row_lengths(axis=2), tf.int32)
        maskable_lengths = tf.where(selectable, word_lengths, 0)
        budget = tf.minimum(
            tf.cast(tf.math.ceil(self.selection_rate * tf.cast(
                tf.reduce_sum(maskable_lengths, axis=1), tf.float32)), tf.int32),
            self.max_selections_per_batch)
        # Non-selectable words and padding sort last (priority 2 > any uniform draw).
        priority = tf.where(selectable.to_tensor(False),
                            tf.random.uniform(tf.shape(selectable.to_tensor(False))), 2.0)
        order = tf.argsort(priority, axis=1)
        sorted_lengths = tf.gather(maskable_lengths.to_tensor(0), order, batch_dims=1)
        sorted_selectable = tf.gather(selectable.to_tensor(False), order, batch_dims=1)
        chosen_sorted = sorted_selectable & (
            tf.cumsum(sorted_lengths, axis=1) <= budget[:, tf.newaxis])
        chosen = tf.gather(chosen_sorted, tf.argsort(order, axis=1), batch_dims=1)
        return tf.RaggedTensor.from_tensor(chosen, lengths=selectable.row_lengths())


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
    """A TF function (segment_a, segment_b, labels) -> the pretraining batch dict.

    segment_a, segment_b: int32 ragged [B, (n)]; labels: int32 [B]. Runs inside
    tf.data.Dataset.map; its random ops draw new masks on every call.
    Selection never picks [CLS], [SEP] or [PAD]; the selected tokens become
    [MASK] 80% of the time, a uniformly random vocabulary id 10%, and stay
    unchanged 10%.
    """
    unselectable_ids = [tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id]
    if whole_word_masking:
        selector = _WholeWordSelector(mask_rate, max_predictions_per_seq, unselectable_ids)
        is_continuation = tf.constant(
            [token.startswith(SUFFIX_INDICATOR) for token in tokenizer.vocabulary])
    else:
        selector = tf_text.RandomItemSelector(
            max_selections_per_batch=max_predictions_per_seq, selection_rate=mask_rate,
            unselectable_ids=unselectable_ids)
    chooser = tf_text.MaskValuesChooser(tokenizer.vocab_size, tokenizer.mask_id,
                                        mask_token_rate=0.8, random_token_rate=0.1)

    def mask_batch(segment_a, segment_b, labels):
        token_ids, segment_ids = tokenizer.join([segment_a, segment_b], max_seq_length)
        items = _group_words(token_ids, is_continuation) if whole_word_masking else token_ids
        masked_ids, positions, original_ids = tf_text.mask_language_model(
            items, selector, chooser, axis=1)
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
            "next_sentence_labels": tf.cast(labels, tf.int32),
        })
        # Ragged ops lose the static batch size that drop_remainder batching gives
        # `labels`; restore it so every output shape is fully defined.
        return {name: tf.ensure_shape(value, labels.shape.concatenate(value.shape[1:]))
                for name, value in batch.items()}

    return mask_batch


def _check_settings(max_seq_length, batch_size, max_predictions_per_seq, mask_rate):
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


def batch_and_mask_pairs(pairs, tokenizer, *, max_seq_length, batch_size,
                         max_predictions_per_seq=20, mask_rate=0.15, whole_word_masking=False,
                         seed=None, shuffle_buffer=10_000):
    """Dataset of (segment_a [n_a], segment_b [n_b], is_next) -> batched, masked dicts.

    Shuffles `pairs` (if shuffle_buffer > 1), batches with drop_remainder=True,
    packs and masks (see make_masking_fn) and prefetches.
    """
    _check_settings(max_seq_length, batch_size, max_predictions_per_seq, mask_rate)
    if shuffle_buffer > 1:
        pairs = pairs.shuffle(shuffle_buffer, seed=seed)
    mask_batch = make_masking_fn(
        tokenizer, max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
        mask_rate=mask_rate, whole_word_masking=whole_word_masking)
    return (pairs.ragged_batch(batch_size, drop_remainder=True)
            .map(mask_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
            .prefetch(tf.data.AUTOTUNE))


def _pair_dataset(tokenized_documents, max_seq_length, *, seed, repeat, short_seq_prob):
    """Dataset of (segment_a int32 [n_a], segment_b int32 [n_b], is_next int32)."""
    # Created once, outside the generator: re-iterating the dataset (a new epoch
    # in Keras fit) continues the random stream, so every epoch gets new pairs.
    rng = np.random.default_rng(seed)

    def pair_blocks():
        while True:
            pairs = make_nsp_pairs(tokenized_documents, max_seq_length, rng, short_seq_prob)
            for start in range(0, len(pairs), _PAIRS_PER_BLOCK):
                block = pairs[start:start + _PAIRS_PER_BLOCK]
                yield (np.concatenate([a for a, _, _ in block]),
                       np.array([len(a) for a, _, _ in block], np.int64),
                       np.concatenate([b for _, b, _ in block]),
                       np.array([len(b) for _, b, _ in block], np.int64),
                       np.array([label for _, _, label in block], np.int32))
            if not repeat:
                return

    ids = tf.TensorSpec([None], tf.int32)
    lengths = tf.TensorSpec([None], tf.int64)
    blocks = tf.data.Dataset.from_generator(
        pair_blocks, output_signature=(ids, lengths, ids, lengths, tf.TensorSpec([None],
                                                                                  tf.int32)))

    def to_ragged(a_values, a_lengths, b_values, b_lengths, labels):
        return (tf.RaggedTensor.from_row_lengths(a_values, a_lengths),
                tf.RaggedTensor.from_row_lengths(b_values, b_lengths), labels)

    return blocks.map(to_ragged).unbatch()


def _check_corpus(tokenized_documents, batch_size, repeat):
    if len(tokenized_documents) < 2:
        raise DataError(
            f"The corpus gives no pretraining examples: it has {len(tokenized_documents)} "
            "document(s) with tokens, and next-sentence pairs need at least two.")
    num_sentences = sum(len(document) for document in tokenized_documents)
    if not repeat and num_sentences < batch_size:
        raise DataError(
            f"One pass over the corpus gives at most {num_sentences} pairs, fewer than "
            f"batch_size={batch_size}, so no full batch; use repeat=True or a smaller batch.")


def dataset_from_tokenized(tokenized_documents, tokenizer, *, max_seq_length, batch_size,
                           max_predictions_per_seq=20, mask_rate=0.15, whole_word_masking=False,
                           seed=None, repeat=True, shuffle_buffer=10_000, short_seq_prob=0.1):
    """pretraining_dataset for documents already passed through tokenize_documents."""
    _check_corpus(tokenized_documents, batch_size, repeat)
    pairs = _pair_dataset(tokenized_documents, max_seq_length, seed=seed, repeat=repeat,
                          short_seq_prob=short_seq_prob)
    return batch_and_mask_pairs(
        pairs, tokenizer, max_seq_length=max_seq_length, batch_size=batch_size,
        max_predictions_per_seq=max_predictions_per_seq, mask_rate=mask_rate,
        whole_word_masking=whole_word_masking, seed=seed, shuffle_buffer=shuffle_buffer)


def pretraining_dataset(documents, tokenizer, *, max_seq_length, batch_size,
                        max_predictions_per_seq=20, mask_rate=0.15, whole_word_masking=False,
                        seed=None, repeat=True, shuffle_buffer=10_000, short_seq_prob=0.1):
    """tf.data pipeline of BERT pretraining batches (MLM + NSP).

    The corpus is tokenized once; next-sentence pairs are re-drawn every epoch
    and masks on every pass. `seed` fixes the pairs and shuffling; mask draws
    follow TensorFlow's global seed (tf.random.set_seed). Note: with a global
    seed set, iterating a repeat=False dataset again from scratch repeats its
    masks (tf.data restarts seeded random ops); the default repeat=True stream
    (with steps_per_epoch in Keras fit) draws new masks for every epoch.

    Args:
      documents: list of documents, each a list of text lines (read_documents).
      tokenizer: WordPieceTokenizer.
      max_seq_length: S. batch_size: B (per replica when distributed).
      max_predictions_per_seq: P, the most masked tokens per example.
      mask_rate: share of maskable tokens selected for prediction.
      whole_word_masking: select all pieces of a word together.
      repeat: endless stream of epochs (True) or a single epoch.

    Returns:
      tf.data.Dataset of dicts (drop_remainder, so every shape is fixed):
        token_ids, segment_ids, padding_mask: int32 [B, S];
        masked_positions, masked_ids: int32 [B, P]; masked_weights: float32 [B, P];
        next_sentence_labels: int32 [B] (1 = B follows A, 0 = random B).

    Raises:
      DataError: max_seq_length too small, or the corpus gives no examples.
    """
    _check_settings(max_seq_length, batch_size, max_predictions_per_seq, mask_rate)
    return dataset_from_tokenized(
        tokenize_documents(documents, tokenizer), tokenizer, max_seq_length=max_seq_length,
        batch_size=batch_size, max_predictions_per_seq=max_predictions_per_seq,
        mask_rate=mask_rate, whole_word_masking=whole_word_masking, seed=seed, repeat=repeat,
        shuffle_buffer=shuffle_buffer, short_seq_prob=short_seq_prob)


def pretraining_dataset_fn(documents, tokenizer, *, global_batch_size, seed=None, **kwargs):
    """A dataset_fn for tf.distribute.Strategy.distribute_datasets_from_function.

    The corpus is tokenized once, here. Each input pipeline then reads every
    num_input_pipelines-th document (so pipelines see disjoint data), seeds its
    own random stream, and batches input_context.get_per_replica_batch_size(
    global_batch_size) examples. Other keyword arguments are those of
    pretraining_dataset.

    Returns:
      Callable[[tf.distribute.InputContext], tf.data.Dataset].
    """
    tokenized_documents = tokenize_documents(documents, tokenizer)

    def dataset_fn(input_context):
        shard = tokenized_documents[input_context.input_pipeline_id::
                                    input_context.num_input_pipelines]
        return dataset_from_tokenized(
            shard, tokenizer,
            batch_size=input_context.get_per_replica_batch_size(global_batch_size),
            seed=None if seed is None else seed + input_context.input_pipeline_id, **kwargs)

    return dataset_fn
