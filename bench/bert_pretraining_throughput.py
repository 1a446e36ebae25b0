"""Training throughput: kerasllm BertPretrainer vs keras-hub BertBackbone + MaskedLMHead.

    python bench/bert_pretraining_throughput.py                 # tiny + small, XLA off and on
    python bench/bert_pretraining_throughput.py --models=bert_tiny --jit_compile=off

Both models train through the same kerasllm step function (same optimizer, same
synthetic batch, same loss), so only the model code differs. The two run in
alternation, several rounds each, and the ratio of their median tokens/s is
reported: on a shared, noisy machine only the side-by-side ratio means anything.
"""
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench.keras_hub_reference import KerasHubBertPretrainer  # noqa: E402
from kerasllm.models import BertEncoder, BertPretrainer, configs  # noqa: E402
from kerasllm.training.config import TrainConfig  # noqa: E402
from kerasllm.training.loop import make_train_function  # noqa: E402
from kerasllm.training.optimizer import create_optimizer  # noqa: E402
from kerasllm.training.strategy import create_strategy  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["bert_tiny", "bert_small"], "Configs from the BERT registry.")
flags.DEFINE_enum("jit_compile", "both", ["both", "on", "off"], "XLA for the training step.")
flags.DEFINE_integer("rounds", 5, "Timed rounds per implementation (alternating).")
flags.DEFINE_integer("steps_per_round", 10, "Training steps per timed round.")
flags.DEFINE_integer("batch_size", 16, "Examples per step.")
flags.DEFINE_integer("seq_length", 128, "Tokens per example.")
flags.DEFINE_integer("num_predictions", 20, "Masked positions per example.")


def synthetic_batch(vocab_size):
    rng = np.random.default_rng(0)
    b, s, p = FLAGS.batch_size, FLAGS.seq_length, FLAGS.num_predictions
    return {
        "token_ids": rng.integers(5, vocab_size, (b, s)).astype("int32"),
        "segment_ids": np.repeat([[0] * (s // 2) + [1] * (s - s // 2)], b, 0).astype("int32"),
        "padding_mask": np.ones((b, s), "int32"),
        "masked_positions": np.sort(rng.choice(np.arange(1, s), (b, p)), -1).astype("int32"),
        "masked_ids": rng.integers(5, vocab_size, (b, p)).astype("int32"),
        "masked_weights": np.ones((b, p), "float32"),
        "next_sentence_labels": rng.integers(0, 2, (b,)).astype("int32"),
    }


def make_runner(build_task, batch, jit_compile):
    """A callable running `steps_per_round` steps and returning tokens/s."""
    strategy = create_strategy("one_device")
    config = TrainConfig(model_dir=tempfile.mkdtemp(), train_steps=10**6,
                         global_batch_size=FLAGS.batch_size, learning_rate=1e-4,
                         warmup_steps=10, jit_compile=jit_compile)
    with strategy.scope():
        task = build_task()
        task.build_for_inputs()
        optimizer = create_optimizer(config)
        optimizer.build(task.trainable_variables)
    dataset = tf.data.Dataset.from_tensors(batch).repeat()
    iterator = iter(strategy.distribute_datasets_from_function(lambda context: dataset))
    train_steps = make_train_function(task, optimizer, strategy, config)
    steps = tf.constant(FLAGS.steps_per_round)
    train_steps(iterator, steps)  # trace (and compile) outside the timing

    def timed_round():
        start = time.perf_counter()
        out = train_steps(iterator, steps)
        tokens = float(out["tokens"])  # fetching the result waits for the steps
        return tokens / (time.perf_counter() - start)

    return timed_round


def main(argv):
    del argv
    jit_settings = {"both": [False, True], "on": [True], "off": [False]}[FLAGS.jit_compile]
    rows = []
    for name in FLAGS.models:
        config = configs.get(name)
        batch = synthetic_batch(config.vocab_size)
        for jit_compile in jit_settings:
            runners = {
                "kerasllm": make_runner(lambda: BertPretrainer(BertEncoder(config)), batch,
                                        jit_compile),
                "keras-hub": make_runner(lambda: KerasHubBertPretrainer(config), batch,
                                         jit_compile),
            }
            speeds = {label: [] for label in runners}
            for _ in range(FLAGS.rounds):
                for label, runner in runners.items():
                    speeds[label].append(runner())
            medians = {label: statistics.median(v) for label, v in speeds.items()}
            rows.append((name, "on" if jit_compile else "off", medians["kerasllm"],
                         medians["keras-hub"], medians["kerasllm"] / medians["keras-hub"]))
            print(f"{name} jit={rows[-1][1]}: kerasllm {medians['kerasllm']:.0f} tok/s, "
                  f"keras-hub {medians['keras-hub']:.0f} tok/s, "
                  f"ratio {rows[-1][4]:.2f}", flush=True)
    print(f"\nbatch {FLAGS.batch_size}, seq {FLAGS.seq_length}, "
          f"{FLAGS.num_predictions} predictions, {FLAGS.rounds} rounds x "
          f"{FLAGS.steps_per_round} steps, median tokens/s")
    print(f"{'model':<12}{'xla':<5}{'kerasllm':>12}{'keras-hub':>12}{'ratio':>8}")
    for name, jit, ours, theirs, ratio in rows:
        print(f"{name:<12}{jit:<5}{ours:>12.0f}{theirs:>12.0f}{ratio:>8.2f}")


if __name__ == "__main__":
    app.run(main)
