"""Side-by-side training throughput, shared by the bench/ scripts.

Each implementation trains through the same kerasllm step function (same optimizer,
same synthetic batch, same loss), so only the model code differs. The two run in
alternation, several rounds each, after an untimed warm-up call, and the ratio of
their median tokens/s is reported: on a shared, noisy machine only the side-by-side
ratio means anything.
"""
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import flags

from bench.cases import OURS, THEIRS  # noqa: F401 (the scripts' labels)
from kerasllm.training.config import TrainConfig
from kerasllm.training.state import global_dtype_policy
from kerasllm.training.step import make_train_function
from kerasllm.training.optimizer import create_optimizer
from kerasllm.training.strategy import create_strategy

FLAGS = flags.FLAGS


def define_flags(models, batch_size, seq_length):
    """The flags every throughput script takes, with that script's defaults."""
    flags.DEFINE_list("models", models, "Model configs to time.")
    flags.DEFINE_enum("jit_compile", "both", ["both", "on", "off"],
                      "XLA for the training step.")
    define_size_flags(batch_size, seq_length, rounds=5, steps_per_round=10)


def set_unless_given(values):
    """Sets each flag named in `values` ({name: value}) that the command line did not
    give: what a script's --quick does."""
    for name, value in values.items():
        if not FLAGS[name].present:
            setattr(FLAGS, name, value)


def define_size_flags(batch_size, seq_length, rounds, steps_per_round):
    """How much each timed training run does (make_runner reads them)."""
    flags.DEFINE_integer("rounds", rounds, "Timed rounds (per implementation, alternating).")
    flags.DEFINE_integer("steps_per_round", steps_per_round, "Training steps per timed round.")
    flags.DEFINE_integer("batch_size", batch_size, "Examples per training step.")
    flags.DEFINE_integer("seq_length", seq_length,
                         "Tokens per example (seq2seq: source and target each).")


def num_trainable(task):
    return int(sum(np.prod(v.shape) for v in task.trainable_variables))


def make_runner(build_task, batch, jit_compile, precision="float32"):
    """(task, a callable running `steps_per_round` steps and returning tokens/s), on
    `batch` repeated, or on the batches of `batch` when it is a dataset_fn; the task
    built under the dtype policy `precision` as the training loop builds it."""
    strategy = create_strategy("one_device")
    config = TrainConfig(model_dir=tempfile.mkdtemp(), train_steps=10**6,
                         global_batch_size=FLAGS.batch_size, learning_rate=1e-4,
                         warmup_steps=10, jit_compile=jit_compile, mixed_precision=precision)
    with strategy.scope():
        with global_dtype_policy(precision):
            task = build_task()
            task.build_for_inputs()
        optimizer = create_optimizer(config, task)
        optimizer.build(task.trainable_variables)
    dataset_fn = batch if callable(batch) else (
        lambda context: tf.data.Dataset.from_tensors(batch).repeat())
    iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))
    train_steps = make_train_function(task, optimizer, strategy, config)
    steps = tf.constant(FLAGS.steps_per_round)
    train_steps(iterator, steps)  # trace (and compile) outside the timing

    def timed_round():
        start = time.perf_counter()
        out = train_steps(iterator, steps)
        tokens = float(out["tokens"])  # fetching the result waits for the steps
        return tokens / (time.perf_counter() - start)

    return task, timed_round


def alternate(runners, repeats):
    """{label: median speed}: each runner (a callable returning a speed) called in
    turn, `repeats` rounds."""
    speeds = {label: [] for label in runners}
    for _ in range(repeats):
        for label, runner in runners.items():
            speeds[label].append(runner())
    return {label: statistics.median(values) for label, values in speeds.items()}


def compare(cases, description):
    """Times each case under each --jit_compile setting and prints a table.

    Args:
      cases: iterable of (name, builders, batch): builders maps OURS and THEIRS to
        a function building that task; batch is the synthetic batch both train on.
      description: what the batch is, for the table's heading.
    """
    jit_settings = {"both": [False, True], "on": [True], "off": [False]}[FLAGS.jit_compile]
    rows = []
    for name, builders, batch in cases:
        for jit_compile in jit_settings:
            tasks, runners = {}, {}
            for label, build_task in builders.items():
                tasks[label], runners[label] = make_runner(build_task, batch, jit_compile)
            if jit_compile == jit_settings[0]:
                print(f"{name} trainable parameters: " + ", ".join(
                    f"{label} {num_trainable(task):,}" for label, task in tasks.items()),
                    flush=True)
            medians = alternate(runners, FLAGS.rounds)
            ratio = medians[OURS] / medians[THEIRS]
            rows.append((name, "on" if jit_compile else "off", medians[OURS],
                         medians[THEIRS], ratio))
            print(f"{name} jit={rows[-1][1]}: {OURS} {medians[OURS]:.0f} tok/s, "
                  f"{THEIRS} {medians[THEIRS]:.0f} tok/s, ratio {ratio:.2f}", flush=True)
    print(f"\nbatch {FLAGS.batch_size}, seq {FLAGS.seq_length}, {description}, "
          f"{FLAGS.rounds} rounds x {FLAGS.steps_per_round} steps, median tokens/s")
    print(f"{'model':<12}{'xla':<5}{OURS:>12}{THEIRS:>12}{'ratio':>8}")
    for name, jit, ours, theirs, ratio in rows:
        print(f"{name:<12}{jit:<5}{ours:>12.0f}{theirs:>12.0f}{ratio:>8.2f}")
