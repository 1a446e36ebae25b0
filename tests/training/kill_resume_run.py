"""A training process for the kill-and-resume tests: `train` on numbered examples,
recording which examples every step saw.

    python -m tests.training.kill_resume_run MODEL_DIR RECORD STRATEGY STEPS [SLEEP]

Each pipeline's stream is a pure function of (seed, batch number), as the loop
requires of a dataset_fn that seeks: epoch e of pipeline p is its share of the
examples in the order of a permutation drawn from (seed + p, e) by
kerasllm.data.batching, which every input pipeline of the library uses. The task (an
embedding, dropout, a dense layer) appends one line per micro-batch it trains on
to the file RECORD: the batch number its pipeline gave the batch, then the ids of
its examples. It prints `step N loss L` (the exact float) after every step and,
at the end, `final {json}`; the weights and optimizer state are in the last
checkpoint. A kerasllm error ends it with one line. SLEEP seconds after each
step leave a killer time to aim.
TF_CONFIG, if set, makes this process one worker of a multi-worker run.
"""
import json
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from kerasllm.data.batching import sharded_dataset_fn, shuffled_batches
from kerasllm.errors import KerasLLMError
from kerasllm.training.config import TrainConfig
from kerasllm.training.loop import train
from kerasllm.training.strategy import create_strategy

NUM_EXAMPLES = 24  # per worker, in batches of 4: six batches an epoch
BATCH_PER_WORKER = 4
LENGTH = 6
VOCAB = 50
SEED = 7


def settings(model_dir, steps, workers=1):
    """Checkpoints every 4 steps, all kept; a warmup and a decay, so the learning
    rate differs at every step."""
    return TrainConfig(model_dir=model_dir, train_steps=steps,
                       global_batch_size=BATCH_PER_WORKER * workers, learning_rate=1e-2,
                       warmup_steps=3, log_every=1, steps_per_loop=1, checkpoint_every=4,
                       keep_checkpoints=100, seed=SEED, deterministic=True)


def example_tables(count):
    rng = np.random.default_rng(0)
    return (rng.integers(0, VOCAB, (count, LENGTH)).astype("int32"),
            rng.normal(size=count).astype("float32"))


def make_dataset_fn(workers):
    """Pipeline p owns examples [p * 24, (p + 1) * 24) and gives them in a fresh
    order each epoch, from batch `start_batch` on (kerasllm.data.batching, as
    every training pipeline of the library does)."""
    tokens, targets = example_tables(NUM_EXAMPLES * workers)

    def make_dataset(share, *, batch_size, seed, start_batch):
        def batch_at(number, rows):
            ids = tf.gather(share, rows)
            return {"example_id": ids, "batch_number": tf.fill([batch_size], number),
                    "token_ids": tf.gather(tokens, ids), "target": tf.gather(targets, ids)}

        return shuffled_batches(len(share), batch_size, seed=seed,
                                start_batch=start_batch).map(batch_at)

    return sharded_dataset_fn(np.arange(NUM_EXAMPLES * workers), make_dataset,
                              global_batch_size=BATCH_PER_WORKER * workers, seed=SEED,
                              contiguous=True)


class RecordingTask(keras.Model):
    """Regresses a target from a bag of tokens, through dropout (whose RNG state a
    resumed run must restore too); writes each training batch's ids to `record`."""

    def __init__(self, record):
        super().__init__()
        self.record = record
        self.embedding = keras.layers.Embedding(VOCAB, 8)
        self.dropout = keras.layers.Dropout(0.25)
        self.head = keras.layers.Dense(1)

    def call(self, token_ids, training=False):
        hidden = self.dropout(self.embedding(token_ids), training=training)
        return self.head(keras.ops.mean(hidden, axis=1))[:, 0]

    def build_for_inputs(self):
        self(tf.zeros([1, LENGTH], tf.int32))
        return self

    def compute_loss_and_metrics(self, batch, training=False):
        if training:
            tf.print(batch["batch_number"][0], batch["example_id"], summarize=-1,
                     output_stream=f"file://{self.record}")
        predictions = self(batch["token_ids"], training=training)
        loss = keras.ops.mean((predictions - batch["target"]) ** 2)
        return loss, {}


def main(model_dir, record, strategy_name, steps, sleep=0.0):
    logging.set_verbosity(logging.INFO)  # "resumed from ..." and the pipelines' start
    strategy = create_strategy(strategy_name)
    config = settings(model_dir, steps, workers=strategy.num_replicas_in_sync)

    def on_log(step, metrics):
        print(f"step {step} loss {metrics['loss']!r}", flush=True)
        time.sleep(sleep)

    try:
        result = train(lambda: RecordingTask(record),
                       make_dataset_fn(strategy.num_replicas_in_sync), config, strategy,
                       on_log=on_log)
    except KerasLLMError as error:  # one line, as the trainers print it
        raise SystemExit(f"kill_resume_run: error: {error}") from None
    iterations = tf.convert_to_tensor(result.optimizer.iterations.value)  # also mirrored
    print("final " + json.dumps({"step": result.step, "iterations": int(iterations)}),
          flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]),
         float(sys.argv[5]) if len(sys.argv) > 5 else 0.0)
