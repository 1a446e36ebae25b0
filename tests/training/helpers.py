"""A tiny BERT task, a fixed batch and a short run of the loop, shared by the training tests."""
import numpy as np
import tensorflow as tf

from kerasllm.models import BertPretrainer
from kerasllm.training.config import TrainConfig
from kerasllm.training.loop import train
from kerasllm.training.optimizer import create_optimizer
from kerasllm.training.strategy import create_strategy

VOCAB = 64
SEQ = 16


def tiny_task():
    return BertPretrainer.from_name("bert_tiny", vocab_size=VOCAB, max_sequence_length=SEQ,
                                    dropout=0.0, attention_dropout=0.0)


def task_and_optimizer(**settings):
    """(a built tiny_task, its optimizer, its trainable variables); `settings` are
    TrainConfig fields beyond a 10-step run of batch 8."""
    task = tiny_task().build_for_inputs()
    config = TrainConfig(model_dir="unused", train_steps=10, global_batch_size=8,
                         **{"warmup_steps": 0, **settings})
    return task, create_optimizer(config, task), task.trainable_variables


def fixed_examples(count=8, seed=0):
    """`count` examples as a dict of numpy arrays; every prediction is real."""
    rng = np.random.default_rng(seed)
    return {
        "token_ids": rng.integers(5, VOCAB, (count, SEQ)).astype("int32"),
        "segment_ids": np.repeat([[0] * (SEQ // 2) + [1] * (SEQ // 2)], count, 0).astype("int32"),
        "padding_mask": np.ones((count, SEQ), "int32"),
        "masked_positions": np.tile(np.arange(1, 5, dtype="int32"), (count, 1)),
        "masked_ids": rng.integers(5, VOCAB, (count, 4)).astype("int32"),
        "masked_weights": np.ones((count, 4), "float32"),
        "next_sentence_labels": (np.arange(count) % 2).astype("int32"),
    }


def repeating_dataset_fn(examples, global_batch_size):
    """A dataset_fn for `train`: the same examples, in order, forever."""
    def dataset_fn(input_context):
        batch = input_context.get_per_replica_batch_size(global_batch_size)
        return tf.data.Dataset.from_tensor_slices(examples).batch(batch).repeat()

    return dataset_fn


# 30 steps learn the fixed batch; progress lines and checkpoints every 10.
SETTINGS = {"train_steps": 30, "global_batch_size": 8, "learning_rate": 3e-3,
            "warmup_steps": 2, "log_every": 10, "checkpoint_every": 10}


def run(model_dir, build_task=tiny_task, examples=None, on_log=None, on_evaluate=None,
        **settings):
    """Trains on `examples` (default: the fixed pretraining batch) on one device;
    returns (result, [(step, metrics)]); `on_log` and `on_evaluate` are called as well."""
    config = TrainConfig(model_dir=str(model_dir), **{**SETTINGS, **settings})
    examples = fixed_examples() if examples is None else examples
    logged = []

    def log(step, metrics):
        logged.append((step, metrics))
        if on_log:
            on_log(step, metrics)

    result = train(build_task, repeating_dataset_fn(examples, config.micro_batch_size),
                   config, create_strategy("one_device"), on_log=log, on_evaluate=on_evaluate)
    return result, logged
