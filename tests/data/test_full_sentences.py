import numpy as np
import pytest
import tensorflow as tf

from kerasllm.data.bert_pretraining import tokenize_documents
from kerasllm.data.full_sentences import (dataset_from_tokenized, pack_full_sentences,
                                          pretraining_dataset_fn, windows_per_draw)
from kerasllm.errors import DataError
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from tests.data.test_bert_pretraining import VOCAB, numbered_documents, origin, text_documents

SEP = 99
SETTINGS = dict(max_seq_length=32, batch_size=8, max_predictions_per_seq=5, seed=0)


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer(VOCAB)


@pytest.fixture(scope="module")
def tokenized(tokenizer):
    return tokenize_documents(text_documents(np.random.default_rng(0), num_documents=60),
                              tokenizer)


def test_packing_by_hand():
    documents = [[np.array([1, 2, 3]), np.array([4, 5])], [np.arange(6, 15)], [np.array([20])]]
    as_lists = lambda windows: [w.tolist() for w in windows]
    # Room for 5: a 9-token sentence is cut; a document that does not fit starts a window.
    assert as_lists(pack_full_sentences(documents, 7, [0, 1, 2], SEP)) == [
        [1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14], [20]]
    # Room for 8: documents meet inside a window, with a separator between them.
    assert as_lists(pack_full_sentences(documents, 10, [2, 0, 1], SEP)) == [
        [20, SEP, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11, 12, 13], [14]]


def test_windows_hold_whole_sentences_in_order_across_documents():
    rng = np.random.default_rng(0)
    documents = [[np.array(s) for s in d] for d in numbered_documents(80, rng)]
    order = rng.permutation(len(documents))
    windows = pack_full_sentences(documents, 24, order, SEP)
    assert all(1 <= len(w) <= 22 for w in windows)
    # Read back in order, the windows are the corpus in that order.
    stream = np.concatenate(windows)
    np.testing.assert_array_equal(stream[stream != SEP],
                                  np.concatenate([np.concatenate(documents[d]) for d in order]))
    crossing = 0
    for window in windows:
        # Sentences enter whole (none here is longer than a window): each window starts one.
        assert window[0] % 10 == 0
        # A separator stands exactly where one document ends and the next begins.
        for before, after in zip(window[:-1], window[1:]):
            if SEP not in (before, after):
                assert origin(before)[0] == origin(after)[0]
        separators = np.flatnonzero(window == SEP)
        for at in separators:
            assert origin(window[at - 1])[0] != origin(window[at + 1])[0]
            assert window[at + 1] % 1000 == 0  # the next document's first token
        crossing += len(separators) > 0
    assert crossing > 5


def test_windows_per_draw_is_a_lower_bound_for_every_order():
    rng = np.random.default_rng(1)
    documents = [[np.array(s) for s in d] for d in numbered_documents(50, rng, max_sentences=12)]
    for max_seq_length in (12, 40):
        fewest = windows_per_draw(documents, max_seq_length)
        counts = [len(pack_full_sentences(documents, max_seq_length,
                                          rng.permutation(len(documents)), SEP))
                  for _ in range(20)]
        assert min(counts) >= fewest


@pytest.fixture(scope="module")
def stream(tokenizer, tokenized):
    per_epoch = windows_per_draw(tokenized, 32) // 8
    dataset = dataset_from_tokenized(tokenized, tokenizer, **SETTINGS)
    assert dataset.element_spec["masked_ids"].shape == (8, 5)
    return per_epoch, list(dataset.take(2 * per_epoch))


def test_batches_have_no_segment_b_and_fresh_windows_every_epoch(tokenizer, stream):
    per_epoch, batches = stream
    assert per_epoch >= 4
    batch = batches[0]
    assert {k: (tuple(v.shape), v.dtype) for k, v in batch.items()} == {
        "token_ids": ((8, 32), tf.int32), "segment_ids": ((8, 32), tf.int32),
        "padding_mask": ((8, 32), tf.int32), "masked_positions": ((8, 5), tf.int32),
        "masked_ids": ((8, 5), tf.int32), "masked_weights": ((8, 5), tf.float32)}
    separators_inside = 0
    for b in batches:
        ids, mask = b["token_ids"].numpy(), b["padding_mask"].numpy()
        assert not b["segment_ids"].numpy().any()
        assert (ids[:, 0] == tokenizer.cls_id).all()
        lengths = mask.sum(axis=1)
        assert (ids[np.arange(8), lengths - 1] == tokenizer.sep_id).all()
        # Windows are packed full: a window closes only when the next sentence does not fit.
        assert lengths.mean() > 24
        separators_inside += int((ids[:, 1:] == tokenizer.sep_id).sum()) - 8
    assert separators_inside > 0  # documents meet inside windows
    first, second = ({tuple(b["token_ids"].numpy()[row]) for b in epoch for row in range(8)}
                     for epoch in (batches[:per_epoch], batches[per_epoch:]))
    assert first != second


def test_start_batch_gives_the_stream_from_there(tokenizer, tokenized, stream):
    per_epoch, batches = stream
    start = per_epoch - 1
    resumed = list(dataset_from_tokenized(tokenized, tokenizer, start_batch=start,
                                          **SETTINGS).take(3))
    for got, want in zip(resumed, batches[start:start + 3], strict=True):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_errors_and_distribution(tokenizer, tokenized):
    with pytest.raises(DataError, match="fewer than batch_size"):
        dataset_from_tokenized(tokenized[:2], tokenizer, max_seq_length=32, batch_size=64)
    with pytest.raises(DataError, match="max_seq_length"):
        dataset_from_tokenized(tokenized, tokenizer, max_seq_length=4, batch_size=8)
    documents = text_documents(np.random.default_rng(0), num_documents=60)
    dataset_fn = pretraining_dataset_fn(documents, tokenizer, global_batch_size=8,
                                        max_seq_length=32, seed=0)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    assert next(iter(dataset_fn(context)))["token_ids"].shape == (4, 32)
