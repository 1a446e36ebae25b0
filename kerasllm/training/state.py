"""What a run trains and saves: the task, its optimizer and the step counter, built
inside the strategy's scope, the task under the run's dtype policy."""
import contextlib
import dataclasses

import keras
import tensorflow as tf

from kerasllm.training.optimizer import create_optimizer


@dataclasses.dataclass
class TrainState:
    """The objects a checkpoint holds (with the task's dropout RNG states)."""

    task: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: tf.Variable  # int64 scalar: optimizer steps taken, counting earlier runs


@contextlib.contextmanager
def global_dtype_policy(name):
    """Keras' global dtype policy set to `name` while the task is built, then put back:
    layers keep the policy they were built with."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_state(build_task, config, strategy):
    """TrainState of a new task from `build_task()` (its weights created) and its
    optimizer for `config`, in `strategy`'s scope."""
    with strategy.scope():
        with global_dtype_policy(config.mixed_precision):
            task = build_task()
            task.build_for_inputs()
        optimizer = create_optimizer(config, task)
        optimizer.build(task.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    return TrainState(task, optimizer, step)
