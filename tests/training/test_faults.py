"""Bad numbers: a NaN or infinite loss or gradient stops the run, naming the step, and
leaves the last good checkpoint the newest; under float16 loss scaling an overflowing
gradient only skips its step."""
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from kerasllm.models import BertPretrainer
from kerasllm.training.config import TrainConfig
from kerasllm.training.errors import TrainingError
from kerasllm.training.loop import train
from kerasllm.training.strategy import create_strategy
from tests.training.helpers import SEQ, VOCAB, fixed_examples


class Poisoned(BertPretrainer):
    """The tiny pretrainer, whose batches may carry poison: `loss_factor` multiplies
    the loss; `bad_gradient` adds a term worth 0 whose gradient is infinite."""

    def compute_loss_and_metrics(self, batch, training=False):
        loss, metrics = super().compute_loss_and_metrics(batch, training)
        weight = self.backbone.pooler.kernel
        infinite_slope = tf.cond(
            batch["bad_gradient"][0] > 0,
            lambda: ops.sum(ops.sqrt(ops.abs(weight - ops.stop_gradient(weight)))),
            lambda: 0.0)
        return loss * batch["loss_factor"][0] + infinite_slope, metrics


def poisoned_task():
    return Poisoned.from_name("bert_tiny", vocab_size=VOCAB, max_sequence_length=SEQ,
                              dropout=0.0, attention_dropout=0.0)


def dataset_fn_poisoning(step, loss_factor=1.0, bad_gradient=0.0):
    """The fixed batch at every step; at optimizer step `step` (counted from 1) with
    the given poison."""
    examples = fixed_examples()

    def dataset_fn(input_context):
        def batch_at(index):
            poisoned = tf.equal(index + 1, step)
            return dict({k: tf.constant(v) for k, v in examples.items()},
                        loss_factor=tf.fill([8], tf.where(poisoned, loss_factor, 1.0)),
                        bad_gradient=tf.fill([8], tf.where(poisoned, bad_gradient, 0.0)))

        return tf.data.Dataset.range(10**6).map(batch_at)

    return dataset_fn


def run(model_dir, dataset_fn, **settings):
    config = TrainConfig(model_dir=str(model_dir), **{
        "train_steps": 20, "global_batch_size": 8, "learning_rate": 1e-3,
        "checkpoint_every": 10, "log_every": 10, **settings})
    return train(poisoned_task, dataset_fn, config, create_strategy("one_device"))


@pytest.mark.parametrize("poison", [{"loss_factor": float("nan")},
                                    {"loss_factor": float("inf")},
                                    {"bad_gradient": 1.0}],
                         ids=["nan_loss", "infinite_loss", "infinite_gradient"])
def test_a_bad_number_stops_the_run_at_its_step(tmp_path, poison):
    with pytest.raises(TrainingError, match=rf"NaN or infinite at step 15; stopped without "
                                            rf"saving, so {tmp_path}/ckpt-10 stays the newest"):
        run(tmp_path, dataset_fn_poisoning(15, **poison))
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-10")


def test_float16_loss_scaling_skips_an_overflowing_step(tmp_path):
    """A loss 1e30 times too large overflows float16 gradients at step 5: the optimizer
    skips that step (the weights after 5 steps equal those after 4) and lowers the
    loss scale, and the run goes on."""
    settings = {"mixed_precision": "mixed_float16", "checkpoint_every": 100,
                "log_every": 1, "warmup_steps": 0,
                "end_learning_rate_fraction": 1.0}  # the same rate in both runs
    four = run(tmp_path / "four", dataset_fn_poisoning(0), train_steps=4, **settings)
    five = run(tmp_path / "five", dataset_fn_poisoning(5, loss_factor=1e30), train_steps=5,
               **settings)
    for a, b in zip(four.task.trainable_variables, five.task.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert float(five.optimizer.dynamic_scale) < float(four.optimizer.dynamic_scale)
