"""Trains the tiny task (with a weight average) under a named strategy and prints a
JSON summary.

Run as a separate process: logical CPU devices and TF_CONFIG must be set before
TensorFlow starts. Usage: python -m tests.training.distributed_run STRATEGY MODEL_DIR [CPUS]
"""
import json
import sys

import tensorflow as tf

from kerasllm.training.config import TrainConfig
from kerasllm.training.loop import train
from kerasllm.training.strategy import create_strategy
from tests.training.helpers import fixed_examples, repeating_dataset_fn, tiny_task


def main(strategy_name, model_dir, cpus=1):
    if cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * cpus)
    strategy = create_strategy(strategy_name)
    if strategy_name == "mirrored" and cpus > 1:
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(cpus)])
    # A large Adam epsilon: Adam's early steps move each weight by about
    # lr * sign(gradient), so gradients that are zero up to float round-off (whose
    # summation order differs between one and two replicas) would otherwise move
    # weights by a full step in random directions and hide real differences.
    # With a moving average of the weights, which must be kept alike on every
    # replica and worker: the weights compared at the end are the average.
    config = TrainConfig(model_dir=model_dir, train_steps=20, global_batch_size=8,
                         learning_rate=2e-2, warmup_steps=2, log_every=10, adam_epsilon=1e-2,
                         ema_momentum=0.9)
    logged = []
    result = train(tiny_task, repeating_dataset_fn(fixed_examples(), config.global_batch_size),
                   config, strategy, on_log=lambda step, metrics: logged.append(metrics))
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "first_loss": logged[0]["mlm_loss"], "last_loss": logged[-1]["mlm_loss"],
        "weight_sum": float(sum(tf.reduce_sum(tf.abs(w)).numpy()
                                for w in result.task.weights)),
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
