"""The batches every training pipeline shares: epochs as index arithmetic over
(seed, epoch), a start at any batch, length buckets, and each input pipeline's share."""
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.data.batching import epoch_batches, sharded_dataset_fn, shuffled_batches
from kerasllm.errors import DataError

KEYS = np.random.default_rng(0).integers(0, 5, 50)  # 50 examples in 5 length buckets


def epoch(number, seed=1, bucketed=True):
    return epoch_batches(len(KEYS), 4, len(KEYS) // 4, seed, tf.constant(number, tf.int64),
                         tf.constant(KEYS, tf.int64) if bucketed else None).numpy()


def test_an_epoch_holds_each_example_once_but_a_few_and_batches_one_bucket():
    batches = epoch(0)
    assert batches.shape == (12, 4)
    assert len(set(batches.ravel())) == 48  # 50 % 4 sit the epoch out
    keys = KEYS[batches]
    mixed = [sorted(set(row)) for row in keys if len(set(row)) > 1]
    # Sorted by bucket and cut in order: only where one bucket ends and the next begins.
    assert len(mixed) < 5 and all(row == list(range(row[0], row[-1] + 1)) for row in mixed)
    assert not np.array_equal(np.sort(keys[:, 0]), keys[:, 0])  # the batches are shuffled


def test_each_epoch_and_seed_draws_its_own_order_and_who_sits_out():
    epochs = [epoch(number) for number in range(8)]
    assert len({tuple(batches.ravel()) for batches in epochs}) == 8
    assert not np.array_equal(epoch(0, seed=2), epochs[0])
    np.testing.assert_array_equal(epoch(3), epochs[3])
    left_out = [set(range(50)) - set(batches.ravel()) for batches in epochs]
    assert len(set().union(*left_out)) > 4 and {KEYS[i] for s in left_out for i in s} != {4}
    unbucketed = epoch(0, bucketed=False)
    assert unbucketed.shape == (12, 4) and len(set(unbucketed.ravel())) == 48


def numbered(dataset, count):
    return [(int(number), tuple(rows.numpy())) for number, rows in dataset.take(count)]


@pytest.mark.parametrize("start", [1, 11, 12, 13, 30])
def test_start_batch_gives_the_stream_from_there(start):
    """12 batches an epoch: starts inside the first, at and around an epoch's end."""
    whole = numbered(shuffled_batches(50, 4, seed=3, bucket_keys=KEYS), start + 4)
    assert [number for number, _ in whole] == list(range(start + 4))
    resumed = numbered(shuffled_batches(50, 4, seed=3, bucket_keys=KEYS, start_batch=start), 4)
    assert resumed == whole[start:]


def test_a_far_batch_is_computed_not_reached_by_reading():
    far = 10**15
    before = numbered(shuffled_batches(50, 4, seed=3, start_batch=far - 1), 2)
    assert numbered(shuffled_batches(50, 4, seed=3, start_batch=far), 1) == before[1:]
    assert before[1][0] == far


def test_a_number_of_epochs():
    assert [number for number, _ in numbered(shuffled_batches(50, 4, epochs=1), 20)] == list(
        range(12))
    with pytest.raises(DataError, match="3 training examples cannot fill one batch of 4"):
        shuffled_batches(3, 4)


def test_each_pipeline_its_share_seed_batch_size_and_start():
    calls = []

    def make_dataset(share, *, batch_size, seed, start_batch):
        calls.append((list(share), batch_size, seed, start_batch))
        return tf.data.Dataset.range(1)

    examples = list(range(10))
    for contiguous in (False, True):
        dataset_fn = sharded_dataset_fn(examples, make_dataset, global_batch_size=12, seed=5,
                                        contiguous=contiguous)
        for pipeline in range(3):
            dataset_fn(tf.distribute.InputContext(num_input_pipelines=3,
                                                  input_pipeline_id=pipeline,
                                                  num_replicas_in_sync=6), start_batch=7)
    assert calls == [([0, 3, 6, 9], 2, 5, 7), ([1, 4, 7], 2, 6, 7), ([2, 5, 8], 2, 7, 7),
                     ([0, 1, 2], 2, 5, 7), ([3, 4, 5], 2, 6, 7), ([6, 7, 8], 2, 7, 7)]
