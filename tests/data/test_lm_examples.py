"""Language-model windows: the stream of a corpus, moving window boundaries, sharding."""
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.data.lm_examples import lm_dataset, lm_dataset_fn, token_stream
from kerasllm.errors import DataError
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "to", "be", "or", "not"]


def test_token_stream_joins_lines_and_ends_every_document():
    tokenizer = WordPieceTokenizer(VOCAB)
    stream = token_stream([["to be", "or not"], ["be"]], tokenizer, end_of_text_id=3)
    np.testing.assert_array_equal(stream, [5, 6, 7, 8, 3, 6, 3])


def windows_of(dataset, batches):
    return np.concatenate([b["token_ids"].numpy() for b in dataset.take(batches)])


def test_training_windows_are_stream_slices_whose_boundaries_move():
    stream = np.arange(1000, dtype=np.int32)
    dataset = lm_dataset(stream, seq_length=10, batch_size=4, training=True, seed=3)
    windows = windows_of(dataset, 100)  # several epochs of 99-100 windows each
    batch = next(iter(dataset))
    assert batch["token_ids"].shape == (4, 10) and batch["padding_mask"].numpy().all()
    np.testing.assert_array_equal(np.diff(windows, axis=1), 1)  # contiguous text
    assert len({int(w[0]) % 10 for w in windows}) > 1  # the offsets differ by epoch
    again = windows_of(lm_dataset(stream, seq_length=10, batch_size=4, training=True,
                                  seed=3), 100)
    np.testing.assert_array_equal(windows, again)  # the seed fixes it


def test_every_epoch_shows_each_of_its_windows_once():
    """1000 tokens give 99 windows of 10 at any offset: 99 batches of 4 are exactly
    4 epochs, each one offset and each window of it once."""
    stream = np.arange(1000, dtype=np.int32)
    firsts = windows_of(lm_dataset(stream, seq_length=10, batch_size=4, training=True,
                                   seed=5), 99)[:, 0]
    epochs = firsts.reshape(4, 99)
    for epoch in epochs:
        assert len(set(epoch % 10)) == 1  # one offset per epoch
        np.testing.assert_array_equal(np.sort(epoch), epoch[0] % 10 + 10 * np.arange(99))
        assert not np.array_equal(epoch, np.sort(epoch))  # shuffled
    assert len({tuple(np.argsort(epoch)) for epoch in epochs}) == 4  # a new order each


@pytest.mark.parametrize("start", [1, 24, 25, 1000])
def test_start_batch_seeks_without_reading_the_batches_before(start):
    stream = np.arange(1000, dtype=np.int32)
    settings = dict(seq_length=10, batch_size=4, training=True, seed=2)
    whole = windows_of(lm_dataset(stream, **settings), start + 3)
    resumed = windows_of(lm_dataset(stream, start_batch=start, **settings), 3)
    np.testing.assert_array_equal(resumed, whole[4 * start:])


def test_pipelines_seek_alike():
    stream = np.arange(400, dtype=np.int32)
    dataset_fn = lm_dataset_fn(stream, seq_length=10, global_batch_size=8, seed=0)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    np.testing.assert_array_equal(windows_of(dataset_fn(context, start_batch=5), 2),
                                  windows_of(dataset_fn(context), 7)[20:])


def test_eval_windows_cover_the_stream_once_in_order():
    stream = np.arange(95, dtype=np.int32)
    windows = windows_of(lm_dataset(stream, seq_length=10, batch_size=4, training=False), 99)
    np.testing.assert_array_equal(windows.ravel(), np.arange(90))


def test_pipelines_read_disjoint_shares():
    stream = np.arange(400, dtype=np.int32)
    dataset_fn = lm_dataset_fn(stream, seq_length=10, global_batch_size=8, seed=0)
    seen = []
    for pipeline in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline,
                                             num_replicas_in_sync=2)
        seen.append(set(windows_of(dataset_fn(context), 10).ravel()))
    assert seen[0] and seen[1] and not seen[0] & seen[1]


def test_too_little_text_is_named():
    # Training counts the windows that fit at every offset: 21 // 10.
    with pytest.raises(DataError, match="30 tokens make 2 windows of 10, fewer than the 4"):
        lm_dataset(np.arange(30), seq_length=10, batch_size=4, training=True)
    with pytest.raises(DataError, match="no documents"):
        token_stream([], WordPieceTokenizer(VOCAB), end_of_text_id=3)
