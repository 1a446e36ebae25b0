"""Side-by-side training throughput, shared by the bench/ scripts.

Each implementation trains through the same kerasllm step function (same optimizer,
same synthetic batch, same loss), so only the model code differs. The two run in
alternation, several rounds each, after an untimed warm-up call, and the ratio of
their median tokens/s is reported: on a shared, noisy machine only the side-by-side
ratio means anything.

    rows = timing.compare(name, timing.same_step(builders, batch))  # one row per XLA setting
    timing.print_training(rows, "what the batch is")                # as a markdown table
"""
import statistics
import tempfile
import time

import numpy as np
import tensorflow as tf
from absl import flags

from bench.cases import OURS
from bench.tables import markdown_table, ratio, speed
from kerasllm.training.config import TrainConfig
from kerasllm.training.optimizer import create_optimizer
from kerasllm.training.state import global_dtype_policy
from kerasllm.training.step import make_train_function
from kerasllm.training.strategy import create_strategy

FLAGS = flags.FLAGS
JIT_SETTINGS = {"both": [False, True], "on": [True], "off": [False]}


def define_flags(models, batch_size, seq_length, *, jit_compile="both", rounds=5,
                 steps_per_round=10):
    """The flags every throughput script takes, with that script's defaults."""
    flags.DEFINE_list("models", models, "Model configs to time.")
    flags.DEFINE_alias("configs", "models")
    flags.DEFINE_enum("jit_compile", jit_compile, list(JIT_SETTINGS),
                      "XLA for the training step.")
    define_size_flags(batch_size, seq_length, rounds=rounds, steps_per_round=steps_per_round)
    flags.DEFINE_alias("repeats", "rounds")
    flags.DEFINE_alias("steps", "steps_per_round")


def define_size_flags(batch_size, seq_length, rounds, steps_per_round):
    """How much each timed training run does (make_runner reads them)."""
    flags.DEFINE_integer("rounds", rounds, "Timed rounds (per implementation, alternating).")
    flags.DEFINE_integer("steps_per_round", steps_per_round, "Training steps per timed round.")
    flags.DEFINE_integer("batch_size", batch_size, "Examples per training step.")
    flags.DEFINE_integer("seq_length", seq_length,
                         "Tokens per example (seq2seq: source and target each).")


def define_parts(parts):
    """--parts: which of a script's `parts` to run (all by default); others are a
    usage error."""
    flags.DEFINE_list("parts", parts, "Which parts to run.")
    flags.register_validator("parts", lambda given: set(given) <= set(parts),
                             f"--parts takes some of {', '.join(parts)}")


def set_unless_given(values):
    """Sets each flag named in `values` ({name: value}) that the command line did not
    give: what a script's --quick does."""
    for name, value in values.items():
        if not FLAGS[name].present:
            setattr(FLAGS, name, value)


def num_trainable(task):
    return int(sum(np.prod(v.shape) for v in task.trainable_variables))


def train_config(jit_compile, precision="float32"):
    """The settings of every timed training run (AdamW, peak 1e-4 after 10 warmup
    steps, --batch_size); TrainConfig insists on a model_dir, which only the
    training loop's checkpoints would use: a new temporary directory."""
    return TrainConfig(model_dir=tempfile.mkdtemp(prefix="bench_"), train_steps=10**6,
                       global_batch_size=FLAGS.batch_size, learning_rate=1e-4,
                       warmup_steps=10, jit_compile=jit_compile, mixed_precision=precision)


def make_runner(build_task, batch, jit_compile, precision="float32"):
    """(task, a callable running `steps_per_round` steps and returning tokens/s), on
    `batch` repeated, or on the batches of `batch` when it is a dataset_fn; the task
    built under the dtype policy `precision` as the training loop builds it."""
    strategy = create_strategy("one_device")
    config = train_config(jit_compile, precision)
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


def make_fit_runner(build, element, jit_compile):
    """(model, a callable running `steps_per_round` steps of Keras' own training and
    returning tokens/s): the model `build` makes, compiled with make_runner's AdamW,
    `jit_compile` and steps_per_execution=--steps_per_round (as one call of the
    training loop's function runs them; keras-hub's tasks keep their default loss and
    weighted metrics, kerasllm's train with their own), on `element` repeated (a
    batch dict or keras' (x, y, sample_weight)). A first `fit` of one execution
    builds the optimizer and metrics and traces (compiles) the train function; each
    round then makes the very call `fit` makes for each execution. Tokens: every id
    of the element's token_ids."""
    model = build()
    if hasattr(model, "build_for_inputs"):  # kerasllm's tasks; keras-hub's are built
        model.build_for_inputs()
    model.compile(optimizer=create_optimizer(train_config(jit_compile), model),
                  jit_compile=jit_compile, steps_per_execution=FLAGS.steps_per_round)
    dataset = tf.data.Dataset.from_tensors(element).repeat()
    model.fit(dataset, steps_per_epoch=FLAGS.steps_per_round, epochs=1, verbose=0,
              shuffle=False)
    iterator = iter(dataset)
    features = element[0] if isinstance(element, tuple) else element
    tokens = FLAGS.steps_per_round * features["token_ids"].size

    def timed_round():
        start = time.perf_counter()
        float(model.train_function(iterator)["loss"])  # fetching it waits for the steps
        return tokens / (time.perf_counter() - start)

    return model, timed_round


def same_step(builders, batch):
    """{label: (jit_compile) -> make_runner(...)} for `compare`: each side's task from
    `builders` ({label: build}) trained by kerasllm's step function on `batch`."""
    return {label: (lambda jit_compile, build=build: make_runner(build, batch, jit_compile))
            for label, build in builders.items()}


def alternate(runners, repeats):
    """{label: median speed}: each runner (a callable returning a speed) called in
    turn, `repeats` rounds."""
    speeds = {label: [] for label in runners}
    for _ in range(repeats):
        for label, runner in runners.items():
            speeds[label].append(runner())
    return {label: statistics.median(values) for label, values in speeds.items()}


def compare(name, factories):
    """[{"model": name, "xla": "on"|"off", label: median tokens/s, ...}], one row per
    --jit_compile setting, OURS first: each factory ({label: (jit_compile) -> (task,
    timed round)}, e.g. same_step's) made, then the rounds alternated --rounds times.
    Prints the trainable-weight counts and each row as it is measured."""
    rows = []
    for jit_compile in JIT_SETTINGS[FLAGS.jit_compile]:
        tasks, runners = {}, {}
        for label, factory in factories.items():
            tasks[label], runners[label] = factory(jit_compile)
        if not rows:
            print(f"{name} trainable parameters: " + ", ".join(
                f"{label} {num_trainable(task):,}" for label, task in tasks.items()),
                flush=True)
        rows.append({"model": name, "xla": "on" if jit_compile else "off",
                     **alternate(runners, FLAGS.rounds)})
        print(f"{name} xla={rows[-1]['xla']}: " + ", ".join(
            f"{label} {rows[-1][label]:.0f} tok/s" for label in runners), flush=True)
    return rows


def compare_cases(case, description):
    """Times each --models name's case(name) -> (builders, batch) as same_step runs
    it, and prints the table under `description`."""
    rows = []
    for name in FLAGS.models:
        rows += compare(name, same_step(*case(name)))
    print_training(rows, description)


def training_table(rows):
    """Lines of compare's rows as a table: each side's tokens/s, and OURS / that side
    for every other."""
    others = [label for label in rows[0] if label not in ("model", "xla", OURS)]
    columns = ["<model", "<xla", f"{OURS} tok/s"]
    for label in others:
        columns += [f"{label} tok/s", f"{OURS} / {label}"]
    cells = []
    for row in rows:
        cells.append([row["model"], row["xla"], speed(row[OURS])])
        for label in others:
            cells[-1] += [speed(row[label]), ratio(row[OURS], row[label])]
    return markdown_table(columns, cells)


def print_training(rows, description):
    """compare's rows under a heading: batch, sequence, `description`, rounds."""
    print(f"\ntraining: batch {FLAGS.batch_size}, seq {FLAGS.seq_length}, {description}, "
          f"{FLAGS.rounds} rounds x {FLAGS.steps_per_round} steps, median tokens/s\n")
    print("\n".join(training_table(rows)))
