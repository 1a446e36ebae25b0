import numpy as np
import pytest
import tensorflow as tf

from kerasllm.data.bert_pretraining_tfrecords import (read_pretraining_pairs,
                                                      read_pretraining_tfrecords,
                                                      tfrecords_dataset_fn,
                                                      write_pretraining_tfrecords)
from kerasllm.errors import DataError
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(100)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """(directory, tokenizer, pairs written) of two draws of pairs from 12 documents."""
    directory = tmp_path_factory.mktemp("records")
    rng = np.random.default_rng(0)
    documents = [[" ".join(f"w{int(i)}" for i in rng.integers(0, 100, 10)) for _ in range(3)]
                 for _ in range(12)]
    tokenizer = WordPieceTokenizer(VOCAB)
    count = write_pretraining_tfrecords(documents, tokenizer, str(directory / "pairs.tfrecord"),
                                        max_seq_length=32, num_epochs_of_pairs=2, seed=0)
    return directory, tokenizer, count


def rows(batch, name):
    return sorted(map(tuple, batch[name].numpy().tolist()))


def test_round_trip_gives_masked_batches_with_fresh_masks(written):
    directory, tokenizer, count = written
    assert count >= 24 and [p.name for p in directory.iterdir()] == ["pairs.tfrecord"]

    dataset = read_pretraining_tfrecords(str(directory / "*.tfrecord"), tokenizer,
                                         max_seq_length=32, batch_size=count,
                                         max_predictions_per_seq=6)
    # One batch is one epoch here; the default repeat=True stream continues
    # with the pairs in a new order, masked anew.
    epochs = iter(dataset)
    first, second = next(epochs), next(epochs)
    assert first["token_ids"].shape == (count, 32) and first["masked_ids"].shape == (count, 6)
    labels = first["next_sentence_labels"].numpy()
    assert 0 < labels.sum() < count
    # The same pairs come back (segments and labels), in another order.
    pairs = [sorted(zip(map(tuple, batch["segment_ids"].numpy().tolist()),
                        batch["next_sentence_labels"].numpy().tolist())) for batch in (first,
                                                                                      second)]
    assert pairs[0] == pairs[1]
    assert not np.array_equal(first["segment_ids"], second["segment_ids"])
    assert rows(first, "masked_positions") != rows(second, "masked_positions")
    unmasked = first["token_ids"].numpy().copy()
    rows_of = np.repeat(np.arange(count)[:, None], 6, axis=1)
    weights = first["masked_weights"].numpy() > 0
    unmasked[rows_of[weights], first["masked_positions"].numpy()[weights]] = \
        first["masked_ids"].numpy()[weights]
    tokens = tokenizer.detokenize(tf.constant(unmasked)).numpy()[0].decode().split()
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2
    assert all(t.startswith("w") for t in tokens if not t.startswith("["))


def test_start_batch_gives_the_stream_from_there(written):
    directory, tokenizer, count = written
    settings = dict(max_seq_length=32, batch_size=4, seed=2)
    pattern = str(directory / "*.tfrecord")
    start = count // 4 - 1  # the last batch of epoch 0
    whole = list(read_pretraining_tfrecords(pattern, tokenizer, **settings).take(start + 3))
    resumed = list(read_pretraining_tfrecords(pattern, tokenizer, start_batch=start,
                                              **settings).take(3))
    for got, want in zip(resumed, whole[start:], strict=True):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def test_dataset_fn_reads_once_and_shares_the_pairs(written):
    directory, tokenizer, count = written
    assert len(read_pretraining_pairs(str(directory / "*.tfrecord"))) == count
    dataset_fn = tfrecords_dataset_fn(str(directory / "*.tfrecord"), tokenizer,
                                      global_batch_size=4, max_seq_length=32, seed=0)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    assert next(iter(dataset_fn(context, start_batch=7)))["token_ids"].shape == (2, 32)


def test_missing_files_raise(tmp_path):
    with pytest.raises(DataError, match="No TFRecord files"):
        read_pretraining_tfrecords(str(tmp_path / "*.tfrecord"), WordPieceTokenizer(VOCAB),
                                   max_seq_length=32, batch_size=2)
