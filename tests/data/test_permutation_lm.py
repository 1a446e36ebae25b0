"""Permutation LM orders, masks and targets: a hand-worked order, their properties on
drawn orders, the seed alone deciding them, and the batch mapping."""
import math

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.data.batching import PERMUTATIONS, stateless_seed
from kerasllm.data.permutation_lm import (add_permutation_targets, edge_tokens,
                                          factorisation_order, permutation_masks,
                                          pretraining_dataset_fn)
from kerasllm.errors import DataError
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from tests.data.test_bert_pretraining import VOCAB, text_documents

CLS, SEP, PAD = 2, 3, 0


def as_numpy(outputs):
    return {name: np.asarray(value).astype(int) if value.dtype == tf.bool else np.asarray(value)
            for name, value in outputs.items()}


def test_hand_worked_order():
    """Five tokens and one pad, no context tokens, order 3, 1, 4, 0, 2 (ranks
    pos0:3 pos1:1 pos2:4 pos3:0 pos4:2), K = 2: the last ceil(5/2) = 3 are predicted."""
    padding_mask = tf.constant([[1, 1, 1, 1, 1, 0]])
    out = as_numpy(permutation_masks(tf.constant([[3, 1, 4, 0, 2, 5]]), padding_mask,
                                     context=tf.zeros([1, 6], tf.bool), partial_prediction=2))
    np.testing.assert_array_equal(out["content_mask"][0], [
        [1, 1, 0, 1, 1, 0],   # position 0, rank 3: sees 3, 1, 4 and itself
        [0, 1, 0, 1, 0, 0],   # position 1, rank 1: sees 3 and itself
        [1, 1, 1, 1, 1, 0],   # position 2, last: sees everything real
        [0, 0, 0, 1, 0, 0],   # position 3, first: itself alone
        [0, 1, 0, 1, 1, 0],   # position 4, rank 2: sees 3, 1 and itself
        [1, 1, 1, 1, 1, 0],   # padding: every real token, as in the plain encoder
    ])
    np.testing.assert_array_equal(out["query_mask"][0], [
        [0, 1, 0, 1, 1, 0],
        [0, 0, 0, 1, 0, 0],
        [1, 1, 0, 1, 1, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 1, 0, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
    ])
    np.testing.assert_array_equal(out["target_positions"], [[4, 0, 2]])
    np.testing.assert_array_equal(out["target_weights"], [[1, 1, 1]])


def test_hand_worked_window_with_cls_and_sep():
    """[CLS] a b c [SEP] PAD PAD, order [CLS] [SEP] c a b, K = 3: one target (b), and
    every token sees the context tokens."""
    padding_mask = tf.constant([[1, 1, 1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(edge_tokens(padding_mask), [[1, 0, 0, 0, 1, 0, 0]])
    out = as_numpy(permutation_masks(tf.constant([[0, 4, 3, 1, 2, 5, 6]]), padding_mask,
                                     partial_prediction=3))
    np.testing.assert_array_equal(out["query_mask"][0], [
        [0, 0, 0, 0, 0, 0, 0],
        [1, 0, 0, 1, 1, 0, 0],
        [1, 1, 0, 1, 1, 0, 0],
        [1, 0, 0, 0, 1, 0, 0],
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0, 0],
    ])
    np.testing.assert_array_equal(out["content_mask"][0],
                                  out["query_mask"][0] + np.diag([1, 1, 1, 1, 1, 0, 0]))
    np.testing.assert_array_equal(out["target_positions"], [[2, 0, 0]])  # P = ceil(7/3)
    np.testing.assert_array_equal(out["target_weights"], [[1, 0, 0]])


def random_windows(rng, batch=16, length=24):
    lengths = rng.integers(1, length + 1, batch)
    lengths[0] = length
    padding_mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    token_ids = np.where(padding_mask == 1, rng.integers(5, 100, (batch, length)), PAD)
    token_ids[np.arange(batch), 0] = CLS
    token_ids[np.arange(batch), lengths - 1] = SEP
    return {"token_ids": token_ids.astype("int32"), "segment_ids": np.zeros_like(token_ids),
            "padding_mask": padding_mask}


@pytest.mark.parametrize("partial_prediction", [1, 2, 6])
def test_drawn_orders_follow_the_rules(partial_prediction):
    rng = np.random.default_rng(0)
    windows = random_windows(rng)
    out = as_numpy(add_permutation_targets(windows, tf.constant([5, 7]),
                                           partial_prediction=partial_prediction))
    length = windows["padding_mask"].shape[1]
    assert out["target_positions"].shape == (16, math.ceil(length / partial_prediction))
    for row in range(16):
        real = windows["padding_mask"][row].astype(bool)
        n = int(real.sum())
        order = out["order"][row]
        assert sorted(order) == list(range(length))
        rank = np.argsort(order)
        context = [0] if n == 1 else [0, n - 1]
        assert list(order[:len(context)]) == context            # context first
        assert list(order[n:]) == list(range(n, length))         # padding last
        content, query = out["content_mask"][row], out["query_mask"][row]
        expected = (rank[None, :] <= rank[:, None]) & real[None, :]
        np.testing.assert_array_equal(content, expected)
        np.testing.assert_array_equal(query, expected & ~np.eye(length, dtype=bool))
        assert np.all(np.diag(content)[real] == 1) and np.all(np.diag(query) == 0)
        assert not content[:, ~real].any() and not query[:, ~real].any()
        targets = math.ceil((n - len(context)) / partial_prediction)
        weights = out["target_weights"][row]
        assert weights.sum() == targets and np.all(weights[:targets] == 1)
        np.testing.assert_array_equal(out["target_positions"][row][:targets],
                                      order[n - targets:n])
        np.testing.assert_array_equal(out["target_ids"][row][:targets],
                                      windows["token_ids"][row][order[n - targets:n]])


def test_the_order_is_a_pure_function_of_the_seed():
    padding_mask = tf.ones([4, 32], tf.int32)
    seed = stateless_seed(11, 3, PERMUTATIONS)
    first = factorisation_order(padding_mask, seed)
    np.testing.assert_array_equal(first, factorisation_order(padding_mask, seed))
    np.testing.assert_array_equal(
        first, factorisation_order(padding_mask, stateless_seed(11, 3, PERMUTATIONS)))
    assert not np.array_equal(first, factorisation_order(
        padding_mask, stateless_seed(11, 4, PERMUTATIONS)))
    assert not np.array_equal(first[0], first[1])  # each row draws its own order


def test_a_pipeline_of_numbered_batches_gives_the_same_stream_again():
    windows = random_windows(np.random.default_rng(1), batch=4, length=12)

    def stream():
        numbered = tf.data.Dataset.range(3).map(lambda number: (number, windows))
        return [as_numpy(batch) for batch in numbered.map(
            lambda number, batch: add_permutation_targets(
                batch, stateless_seed(0, number, PERMUTATIONS), partial_prediction=3))]

    first, again = stream(), stream()
    for a, b in zip(first, again):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(first[0]["order"], first[1]["order"])


def test_no_context_never_predicts_the_first_of_the_order():
    """Its query row would be empty; with K = 1 the other four are predicted."""
    out = as_numpy(permutation_masks(tf.constant([[2, 0, 1, 3, 4]]), tf.ones([1, 5]),
                                     context=tf.zeros([1, 5], tf.bool), partial_prediction=1))
    np.testing.assert_array_equal(out["target_positions"], [[0, 1, 3, 4, 0]])
    np.testing.assert_array_equal(out["target_weights"], [[1, 1, 1, 1, 0]])


def test_pretraining_pipeline_permutes_whole_sentence_windows():
    """Windows packed across documents, the text as it is (no [MASK]), targets only
    where text is, and a resumed stream is the uninterrupted one."""
    tokenizer = WordPieceTokenizer(VOCAB)
    documents = text_documents(np.random.default_rng(0), num_documents=60)
    dataset_fn = pretraining_dataset_fn(documents, tokenizer, global_batch_size=8,
                                        max_seq_length=32, seed=0, partial_prediction=4)
    context = tf.distribute.InputContext()
    batches = [as_numpy(b) for b in dataset_fn(context).take(3)]
    resumed = as_numpy(next(iter(dataset_fn(context, start_batch=2))))
    for name in batches[2]:
        np.testing.assert_array_equal(resumed[name], batches[2][name])
    batch = batches[0]
    assert batch["content_mask"].shape == (8, 32, 32) and batch["target_ids"].shape == (8, 8)
    assert not (batch["token_ids"] == tokenizer.mask_id).any()
    targets = batch["target_ids"][batch["target_weights"] > 0]
    assert len(targets) > 8 * 4
    assert not set(targets.tolist()) & {tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id}
    inner_separators = sum(int((b["token_ids"][:, 1:] == tokenizer.sep_id).sum()) - 8
                           for b in batches)
    assert inner_separators > 0  # documents meet inside windows


def test_special_ids_are_context_wherever_they_are():
    """A window packed across documents: a [SEP] in the middle is never predicted."""
    token_ids = tf.constant([[CLS, 10, 11, SEP, 12, 13, 14, SEP]])
    out = add_permutation_targets(
        {"token_ids": token_ids, "segment_ids": tf.zeros_like(token_ids),
         "padding_mask": tf.ones_like(token_ids)}, tf.constant([3, 4]), partial_prediction=1,
        special_ids=(CLS, SEP))
    np.testing.assert_array_equal(out["order"][0, :3], [0, 3, 7])
    assert sorted(np.asarray(out["target_positions"][0])) == [0, 0, 0, 1, 2, 4, 5, 6]
    assert np.asarray(out["target_weights"]).sum() == 5


def test_bad_settings_are_named():
    with pytest.raises(DataError, match="partial_prediction .* at least 1, got 0"):
        permutation_masks(tf.zeros([1, 4], tf.int32), tf.ones([1, 4]), partial_prediction=0)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32)], autograph=False)
    def unknown_length(padding_mask):
        return permutation_masks(padding_mask, padding_mask)

    with pytest.raises(DataError, match="known length"):
        unknown_length.get_concrete_function()
