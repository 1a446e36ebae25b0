import time

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.errors import DataError
from kerasllm.data.bert_pretraining import (make_masking_fn, make_nsp_pairs, pairs_per_draw,
                                            pretraining_dataset, pretraining_dataset_fn,
                                            tokenize_documents, truncated_lengths)
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(200)]
PIECES = [f"##p{i}" for i in range(100)]
VOCAB = SPECIALS + WORDS + PIECES
FIRST_WORD, FIRST_PIECE = len(SPECIALS), len(SPECIALS) + len(WORDS)
S, P = 128, 20


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer(VOCAB)


def numbered_documents(num_documents, rng, max_sentences=6):
    """Sentence j of document d holds tokens d * 1000 + j * 10 + k: its origin is readable."""
    return [[list(range(d * 1000 + j * 10, d * 1000 + j * 10 + int(rng.integers(1, 9))))
             for j in range(int(rng.integers(1, max_sentences + 1)))]
            for d in range(num_documents)]


def origin(token):
    return token // 1000, (token % 1000) // 10


@pytest.mark.parametrize("max_seq_length", [24, 200])
def test_nsp_pairs_are_balanced_and_truthful(max_seq_length):
    rng = np.random.default_rng(0)
    documents = numbered_documents(150, rng)  # ~1/6 of them have a single sentence
    pairs = [pair for _ in range(3) for pair in make_nsp_pairs(documents, max_seq_length, rng)]
    assert len(pairs) > 300
    labels = np.array([label for _, _, label in pairs])
    assert abs(labels.mean() - 0.5) < 0.05
    for a, b, label in pairs:
        assert 1 <= len(a) and 1 <= len(b) and len(a) + len(b) <= max_seq_length - 3
        a_doc, a_last = origin(a[-1])
        b_doc, b_first = origin(b[0])
        assert a[0] % 10 == 0 and b[0] % 10 == 0  # segments start at sentence starts
        if label == 0:
            assert b_doc != a_doc
        elif max_seq_length == 200:  # nothing is truncated, so A's last sentence is whole
            assert b_doc == a_doc and b_first == a_last + 1
        else:
            assert b_doc == a_doc and b_first > a_last


def test_nsp_pairs_handle_single_sentence_documents():
    documents = [[[1, 2, 3]], [[4, 5]], [[6]]]
    pairs = make_nsp_pairs(documents, 16, np.random.default_rng(0))
    assert len(pairs) == 3 and all(label == 0 for _, _, label in pairs)
    with pytest.raises(DataError, match="two"):
        make_nsp_pairs(documents[:1], 16, np.random.default_rng(0))
    with pytest.raises(DataError, match="max_seq_length"):
        make_nsp_pairs(documents, 4, np.random.default_rng(0))


def test_truncated_lengths():
    assert truncated_lengths(3, 4, 10) == (3, 4)
    assert truncated_lengths(20, 3, 10) == (7, 3)
    assert truncated_lengths(3, 20, 10) == (3, 7)
    assert truncated_lengths(20, 30, 11) == (6, 5)


def random_batch(rng, batch=64, length_a=60, length_b=65):
    a = rng.integers(FIRST_WORD, len(VOCAB), size=(batch, length_a), dtype=np.int32)
    b = rng.integers(FIRST_WORD, len(VOCAB), size=(batch, length_b), dtype=np.int32)
    return tf.RaggedTensor.from_tensor(a), tf.RaggedTensor.from_tensor(b), tf.zeros([batch],
                                                                                    tf.int32)


def seed(*numbers):
    return tf.constant(numbers, tf.int64)


def test_masking_statistics(tokenizer):
    mask_batch = make_masking_fn(tokenizer, max_seq_length=S, max_predictions_per_seq=P)
    segments = random_batch(np.random.default_rng(0))
    selected = mask_changes = random_changes = kept = 0
    for number in range(2):
        batch = mask_batch(segments[:2], seed(1, number), segments[2])
        original = tf.concat([segments[0].to_tensor(), segments[1].to_tensor()], axis=1).numpy()
        maskable = original.size
        for row in range(original.shape[0]):
            count = int(batch["masked_weights"][row].numpy().sum())
            positions = batch["masked_positions"][row, :count].numpy()
            targets = batch["masked_ids"][row, :count].numpy()
            # Position 0 is [CLS]; A spans 1..60, [SEP] at 61, B at 62..126, [SEP] at 127.
            assert not set(positions) & {0, 61, 127} and positions.max() < 128
            source = np.where(positions <= 60, positions - 1, positions - 2)
            np.testing.assert_array_equal(targets, original[row, source])
            now = batch["token_ids"][row].numpy()[positions]
            selected += count
            mask_changes += int((now == tokenizer.mask_id).sum())
            kept += int((now == targets).sum())
            random_changes += int(((now != targets) & (now != tokenizer.mask_id)).sum())
        assert batch["token_ids"].numpy()[:, [0, 61, 127]].tolist() == [[2, 3, 3]] * 64
    assert selected > 1500
    assert abs(selected / (2 * maskable) - 0.15) < 0.02
    assert abs(mask_changes / selected - 0.8) < 0.03
    assert abs(random_changes / selected - 0.1) < 0.03
    assert abs(kept / selected - 0.1) < 0.03


def test_masks_are_a_function_of_the_seed(tokenizer):
    mask_batch = make_masking_fn(tokenizer, max_seq_length=S, max_predictions_per_seq=P)
    segments = random_batch(np.random.default_rng(0), batch=8)
    first, again, other = (mask_batch(segments[:2], seed(3, n), segments[2]) for n in (0, 0, 1))
    for name in ("token_ids", "masked_positions"):
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(first["masked_positions"], other["masked_positions"])


def random_words(rng, num_words):
    ids = []
    for _ in range(num_words):
        ids.append(int(rng.integers(FIRST_WORD, FIRST_PIECE)))
        ids.extend(int(p) for p in rng.integers(FIRST_PIECE, len(VOCAB), rng.integers(0, 3)))
    return ids


def test_whole_word_masking_never_splits_words(tokenizer):
    rng = np.random.default_rng(0)
    a = tf.ragged.constant([random_words(rng, 25) for _ in range(64)], tf.int32)
    b = tf.ragged.constant([random_words(rng, 25) for _ in range(64)], tf.int32)
    mask_batch = make_masking_fn(tokenizer, max_seq_length=S, max_predictions_per_seq=P,
                                 whole_word_masking=True)
    batch = mask_batch((a, b), seed(0, 0), tf.zeros([64], tf.int32))
    token_ids = tf.concat([tf.fill([64, 1], 2), a, tf.fill([64, 1], 3), b,
                           tf.fill([64, 1], 3)], axis=1)
    total_selected = total_maskable = 0
    for row in range(64):
        original = token_ids[row].numpy()[:S]
        count = int(batch["masked_weights"][row].numpy().sum())
        assert 0 < count <= P
        selected = set(batch["masked_positions"][row, :count].numpy().tolist())
        word_of = np.cumsum(original < FIRST_PIECE)  # "##p" pieces join the word before
        for position in selected:
            assert original[position] not in (2, 3)
            assert {i for i in np.flatnonzero(word_of == word_of[position])} <= selected
        total_selected += count
        total_maskable += int((original > 4).sum())
    assert abs(total_selected / total_maskable - 0.15) < 0.02


def text_documents(rng, num_documents=40):
    return [[" ".join(f"w{int(i)}" for i in rng.integers(0, 200, rng.integers(3, 12)))
             for _ in range(int(rng.integers(1, 6)))] for _ in range(num_documents)]


SETTINGS = dict(max_seq_length=32, batch_size=8, max_predictions_per_seq=5, seed=0)


@pytest.fixture(scope="module")
def documents():
    return text_documents(np.random.default_rng(0))


@pytest.fixture(scope="module")
def stream(tokenizer, documents):
    """(batches an epoch, the dataset, the first two epochs of its batches)."""
    per_epoch = pairs_per_draw(tokenize_documents(documents, tokenizer), 32) // 8
    dataset = pretraining_dataset(documents, tokenizer, **SETTINGS)
    return per_epoch, dataset, list(dataset.take(2 * per_epoch))


def test_dataset_shapes_and_fresh_pairs_every_epoch(tokenizer, stream):
    per_epoch, dataset, batches = stream
    assert per_epoch >= 4
    batch = batches[0]
    expected = {"token_ids": ((8, 32), tf.int32), "segment_ids": ((8, 32), tf.int32),
                "padding_mask": ((8, 32), tf.int32), "masked_positions": ((8, 5), tf.int32),
                "masked_ids": ((8, 5), tf.int32), "masked_weights": ((8, 5), tf.float32),
                "next_sentence_labels": ((8,), tf.int32)}
    assert {k: (tuple(v.shape), v.dtype) for k, v in batch.items()} == expected
    assert dataset.element_spec["token_ids"].shape == (8, 32)
    assert (batch["token_ids"].numpy()[:, 0] == tokenizer.cls_id).all()
    first_pairs, second_pairs = (
        {(*b["segment_ids"].numpy()[row], int(b["next_sentence_labels"][row]))
         for b in epoch for row in range(8)}
        for epoch in (batches[:per_epoch], batches[per_epoch:]))
    assert first_pairs != second_pairs  # drawn afresh


def test_one_epoch_without_repeat(tokenizer, documents, stream):
    per_epoch, _, batches = stream
    single = list(pretraining_dataset(documents, tokenizer, repeat=False, **SETTINGS))
    assert len(single) == per_epoch
    for got, want in zip(single, batches):
        np.testing.assert_array_equal(got["token_ids"], want["token_ids"])


def test_every_draw_gives_at_least_pairs_per_draw():
    rng = np.random.default_rng(0)
    documents = numbered_documents(60, rng, max_sentences=12)
    for max_seq_length in (16, 40):
        fewest = pairs_per_draw(documents, max_seq_length)
        counts = [len(make_nsp_pairs(documents, max_seq_length, rng, short_seq_prob=0.5))
                  for _ in range(20)]
        assert min(counts) >= fewest and max(counts) > fewest


def test_start_batch_gives_the_stream_from_there(tokenizer, documents, stream):
    """Pairs, order and masks alike, a stream started at a batch late in epoch 0 is
    the uninterrupted one's, into epoch 1; and a batch 10**12 in is reached at once."""
    per_epoch, _, batches = stream
    start = per_epoch - 1
    resumed = list(pretraining_dataset(documents, tokenizer, start_batch=start,
                                       **SETTINGS).take(3))
    for got, want in zip(resumed, batches[start:start + 3], strict=True):
        for name in want:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)
    far = next(iter(pretraining_dataset(documents, tokenizer, start_batch=10**12, **SETTINGS)))
    assert far["token_ids"].shape == (8, 32)


def test_dataset_errors(tokenizer, documents):
    with pytest.raises(DataError, match="max_seq_length"):
        pretraining_dataset(documents, tokenizer, max_seq_length=4, batch_size=8)
    with pytest.raises(DataError, match="no pretraining examples"):
        pretraining_dataset([["w1 w2"], ["", "  "]], tokenizer, max_seq_length=32, batch_size=8)
    with pytest.raises(DataError, match="batch_size"):
        pretraining_dataset(documents[:3], tokenizer, max_seq_length=32, batch_size=64,
                            repeat=False)


def test_dataset_fn_for_distribution(tokenizer, documents):
    dataset_fn = pretraining_dataset_fn(documents, tokenizer, global_batch_size=8,
                                        max_seq_length=32, seed=0)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    batch = next(iter(dataset_fn(context)))
    assert batch["token_ids"].shape == (4, 32)
    strategy = tf.distribute.get_strategy()
    distributed = strategy.distribute_datasets_from_function(dataset_fn)
    assert next(iter(distributed))["token_ids"].shape == (8, 32)


@pytest.mark.slow
def test_throughput_exceeds_1000_examples_per_second(tokenizer):
    rng = np.random.default_rng(0)
    documents = text_documents(rng, num_documents=2000)
    dataset = pretraining_dataset(documents, tokenizer, max_seq_length=128, batch_size=32,
                                  seed=0)
    iterator = iter(dataset)
    next(iterator)
    start = time.perf_counter()
    for _ in range(100):
        next(iterator)
    examples_per_second = 100 * 32 / (time.perf_counter() - start)
    print(f"pretraining pipeline: {examples_per_second:.0f} examples/s")
    assert examples_per_second > 1000
