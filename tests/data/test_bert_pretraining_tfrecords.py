import numpy as np
import pytest
import tensorflow as tf

from kerasllm.errors import DataError
from kerasllm.data.bert_pretraining_tfrecords import read_pretraining_tfrecords, write_pretraining_tfrecords
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(100)]


def test_round_trip_gives_masked_batches_with_fresh_masks(tmp_path):
    rng = np.random.default_rng(0)
    documents = [[" ".join(f"w{int(i)}" for i in rng.integers(0, 100, 10)) for _ in range(3)]
                 for _ in range(12)]
    tokenizer = WordPieceTokenizer(VOCAB)
    path = tmp_path / "pairs.tfrecord"
    count = write_pretraining_tfrecords(documents, tokenizer, str(path), max_seq_length=32,
                                        num_epochs_of_pairs=2, seed=0)
    assert count >= 24 and [p.name for p in tmp_path.iterdir()] == ["pairs.tfrecord"]

    dataset = read_pretraining_tfrecords(str(tmp_path / "*.tfrecord"), tokenizer,
                                         max_seq_length=32, batch_size=count,
                                         max_predictions_per_seq=6, shuffle_buffer=1)
    # One batch is one epoch here; the default repeat=True stream continues
    # with new masks for the next epoch.
    epochs = iter(dataset)
    first, second = next(epochs), next(epochs)
    assert first["token_ids"].shape == (count, 32) and first["masked_ids"].shape == (count, 6)
    labels = first["next_sentence_labels"].numpy()
    assert 0 < labels.sum() < count
    # The same pairs come back (segments and labels), masked differently each pass.
    np.testing.assert_array_equal(first["segment_ids"], second["segment_ids"])
    np.testing.assert_array_equal(labels, second["next_sentence_labels"])
    assert not np.array_equal(first["masked_positions"], second["masked_positions"])
    unmasked = first["token_ids"].numpy().copy()
    rows = np.repeat(np.arange(count)[:, None], 6, axis=1)
    weights = first["masked_weights"].numpy() > 0
    unmasked[rows[weights], first["masked_positions"].numpy()[weights]] = \
        first["masked_ids"].numpy()[weights]
    tokens = tokenizer.detokenize(tf.constant(unmasked)).numpy()[0].decode().split()
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2
    assert all(t.startswith("w") for t in tokens if not t.startswith("["))


def test_missing_files_raise(tmp_path):
    with pytest.raises(DataError, match="No TFRecord files"):
        read_pretraining_tfrecords(str(tmp_path / "*.tfrecord"), WordPieceTokenizer(VOCAB),
                                   max_seq_length=32, batch_size=2)
