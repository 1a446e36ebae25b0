"""Permutation language modelling (XLNet, Yang et al., 2019, §2.2-2.3): a random
factorisation order per window, the two attention masks it implies and the
tokens to predict.

A window's tokens are predicted one after another in a sampled order z rather
than left to right: token z_t from the tokens z_<t. In attention terms (row i =
attending position, column j = attended, rank = place in the order):

  content_mask[i, j] = rank(j) <= rank(i)   the content stream h_i sees its own
                                            token and the ones before it
  query_mask[i, j]   = rank(j) <  rank(i)   the query stream g_i, which predicts
                                            token i, never sees it

Padding is never attended (its columns are 0) and never predicted; its rows
come last in the order, so they see every real token as the encoder's
ordinary attention lets padding do.

Context tokens (by default the window's first and last real tokens, "[CLS]" and
"[SEP]") come first in the order, in position order, and are never predicted:
they hold no text, and every predicted token sees them. The other real tokens
follow in a random order drawn from the seed.

Partial prediction (§2.3): only the last ceil(n / K) of the n tokens that can be
predicted are targets, as the first ones have too little context to learn from.
Every target has at least one token before it in the order, so no query stream
row that is predicted is empty: attention spreads an empty row over every key,
its own token and padding included. (The first token of the order has such a
row; nothing is predicted from it, and no other row reads the query stream.)
"""
import math

import tensorflow as tf

from kerasllm.data import full_sentences
from kerasllm.data.batching import PERMUTATIONS, sharded_dataset_fn, stateless_seed
from kerasllm.data.bert_pretraining import tokenize_documents
from kerasllm.errors import DataError

# XLNet predicts the last 1/6 to 1/7 of each order.
DEFAULT_PARTIAL_PREDICTION = 6


def edge_tokens(padding_mask):
    """bool [B, S]: each row's first and last real token ("[CLS]" and "[SEP]" of a
    "[CLS] window [SEP]" row)."""
    real = tf.cast(padding_mask, tf.bool)
    positions = tf.range(tf.shape(real)[1])[None, :]
    last = tf.reduce_sum(tf.cast(real, tf.int32), axis=1, keepdims=True) - 1
    return real & ((positions == 0) | (positions == last))


def factorisation_order(padding_mask, seed, context=None):
    """int32 [B, S]: each row's positions in factorisation order: its context
    tokens (default edge_tokens) in position order, its other real tokens in an
    order drawn from `seed` (int [2], a stateless random seed), then its padding.
    A pure function of its arguments."""
    real = tf.cast(padding_mask, tf.bool)
    context = edge_tokens(padding_mask) if context is None else tf.cast(context, tf.bool) & real
    draws = tf.random.stateless_uniform(tf.shape(real), seed)
    # Draws lie in [0, 1): -1 puts context tokens first, 2 padding last; the stable
    # sort keeps those two groups in position order.
    keys = tf.where(context, -1.0, tf.where(real, draws, 2.0))
    return tf.argsort(keys, axis=1, stable=True, direction="ASCENDING")


def permutation_masks(order, padding_mask, context=None,
                      partial_prediction=DEFAULT_PARTIAL_PREDICTION):
    """The attention masks and prediction targets of factorisation orders.

    Args:
      order: int [B, S], each row's positions in factorisation order, context
        tokens first and padding last (as factorisation_order gives them).
      padding_mask: int/bool [B, S], 1 = real token.
      context: bool [B, S], the tokens never predicted; default edge_tokens.
      partial_prediction: K, the targets are the last ceil(n / K) of a row's n
        tokens that are not context (at most n, and none at rank 0).
    Returns:
      dict of content_mask, query_mask bool [B, S, S] (see the module
      docstring); target_positions int32 [B, P], target_weights float32 [B, P]
      (1 = a real target, 0 = padding, at position 0), P = ceil(S / K).

    Raises:
      DataError: K below 1, or S unknown when the graph is traced.
    """
    if not isinstance(partial_prediction, int) or partial_prediction < 1:
        raise DataError(f"partial_prediction is K, the targets being the last 1/K of each "
                        f"order: a whole number of at least 1, got {partial_prediction!r}")
    length = padding_mask.shape[1]
    if length is None:
        raise DataError("permutation targets need windows of a known length (their number "
                        "of targets is fixed by it); pad the batch to a fixed length")
    real = tf.cast(padding_mask, tf.bool)
    context = edge_tokens(padding_mask) if context is None else tf.cast(context, tf.bool) & real
    order = tf.cast(order, tf.int32)
    rank = tf.argsort(order, axis=1, stable=True)  # the inverse permutation
    attending, attended = rank[:, :, None], rank[:, None, :]
    real_columns = real[:, None, :]

    num_real = tf.reduce_sum(tf.cast(real, tf.int32), axis=1)
    predictable = num_real - tf.reduce_sum(tf.cast(context, tf.int32), axis=1)
    num_targets = tf.minimum(-(-predictable // partial_prediction), num_real - 1)
    slots = tf.range(math.ceil(length / partial_prediction))[None, :]
    is_target = slots < num_targets[:, None]
    # Target p is the order's (num_real - num_targets + p)-th position.
    places = tf.where(is_target, slots + (num_real - num_targets)[:, None], 0)
    return {
        "content_mask": (attended <= attending) & real_columns,
        "query_mask": (attended < attending) & real_columns,
        "target_positions": tf.where(is_target, tf.gather(order, places, batch_dims=1), 0),
        "target_weights": tf.cast(is_target, tf.float32),
    }


def add_permutation_targets(batch, seed, *, partial_prediction=DEFAULT_PARTIAL_PREDICTION,
                            special_ids=None):
    """A window batch -> the batch PermutationLanguageModel trains on: an order
    drawn from `seed` (e.g. kerasllm.data.batching.stateless_seed(seed,
    batch_number, PERMUTATIONS)) and its permutation_masks, for a tf.data map.

    Args:
      batch: dict with token_ids, segment_ids, padding_mask int [B, S], S fixed,
        the text as it is (no masks).
      seed: int [2].
      partial_prediction: K (see permutation_masks).
      special_ids: token ids that are context wherever they are (e.g. the
        tokenizer's cls_id and sep_id, when windows hold separators between
        documents); default: each row's first and last real token.
    Returns:
      dict: token_ids, segment_ids, padding_mask as given; order int32 [B, S];
      content_mask, query_mask bool [B, S, S]; target_positions, target_ids int32
      [B, P]; target_weights float32 [B, P].
    """
    token_ids = tf.cast(batch["token_ids"], tf.int32)
    padding_mask = batch["padding_mask"]
    context = None
    if special_ids is not None:
        context = tf.reduce_any(
            token_ids[:, :, None] == tf.constant(list(special_ids), tf.int32), axis=-1)
    order = factorisation_order(padding_mask, seed, context)
    targets = permutation_masks(order, padding_mask, context, partial_prediction)
    targets["target_ids"] = tf.gather(token_ids, targets["target_positions"], batch_dims=1)
    return {**batch, "token_ids": token_ids, "order": order, **targets}


def pretraining_dataset_fn(documents, tokenizer, *, global_batch_size, max_seq_length,
                           seed=None, partial_prediction=DEFAULT_PARTIAL_PREDICTION):
    """A training dataset_fn for kerasllm.training.loop.train: RoBERTa's
    full-sentence windows (kerasllm.data.full_sentences, unmasked), each batch k
    with an order drawn from (seed, k); [CLS] and [SEP], also the [SEP] between
    two documents inside a window, are context, never predicted."""
    def permuted(share, *, batch_size, seed, start_batch):
        windows = full_sentences.padded_windows(
            share, tokenizer, max_seq_length=max_seq_length, batch_size=batch_size, seed=seed,
            start_batch=start_batch)
        return windows.map(lambda number, batch: add_permutation_targets(
            batch, stateless_seed(seed, number, PERMUTATIONS), partial_prediction=partial_prediction,
            special_ids=(tokenizer.cls_id, tokenizer.sep_id)),
            num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    return sharded_dataset_fn(tokenize_documents(documents, tokenizer), permuted,
                              global_batch_size=global_batch_size, seed=seed, contiguous=True)
