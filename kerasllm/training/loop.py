"""The one training loop: `strategy.run` steps, checkpoints with resume, summaries.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585),
so every model family trains here instead. A task is a keras.Model with
`build_for_inputs()` (creates its variables) and
`compute_loss_and_metrics(batch, training) -> (loss, {name: scalar})`, the
contract of kerasllm.models.task.TaskModel, which the loop only duck-types: it
knows no model family.

Resuming is exact: a run killed at any moment (even `kill -9`) and started again
with the same command continues from the newest checkpoint as if never stopped.
The checkpoint holds the weights, the optimizer (Adam's moments and `iterations`,
hence the learning-rate schedule's position, any weight average or loss scale),
the Keras RNG states (dropout) and the step. The data position is not stored at
all: it follows from the step. Each input pipeline has read exactly
`step * grad_accum_steps * replicas_per_pipeline` batches, so the loop asks
`dataset_fn` for its dataset from that batch on (`start_batch`); a dataset_fn
whose batches are a pure function of (seed, batch number) can start there at
no cost (kerasllm.data.lm_examples.lm_dataset: a per-epoch order computed by the
op of `tf.random.experimental.index_shuffle`, so batch k needs no batch before it).
Why not checkpoint the tf.data iterator instead: the iterator's state carries
its shuffle and prefetch buffers (10,000 windows of text per pipeline, written at
every checkpoint), pipelines fed by Python generators (`from_generator`) cannot
be saved at all, and under MultiWorkerMirroredStrategy each worker's iterator
state would live only in its own checkpoint copy, so every worker's copy would
have to be kept and agreed on. Counting batches needs none of that: the chief's
checkpoint alone restores every worker. A dataset_fn without a `start_batch`
argument still resumes in place, by reading and dropping the batches already
trained on (`Dataset.skip`, exact if its pipeline is seeded; slow for long runs).

Under MultiWorkerMirroredStrategy every worker restores from the chief's
checkpoints in model_dir (storage all workers share, as TensorFlow requires for
MWMS checkpoints) and the workers check that they resumed at the same step. A
worker that dies stops the others: TensorFlow aborts their collective ops (at
once if the peer's connection is reset, else when the coordination service
misses its heartbeats, about 10 s), and the loop turns that into a
TrainingError naming the lost worker and the checkpoint a rerun resumes from.
With `config.deterministic` (tf.config.experimental.enable_op_determinism), a
resumed run's weights equal an uninterrupted run's bit for bit.
"""
import contextlib
import dataclasses
import inspect
import os
import re
import shutil
import tempfile
import time

import keras
import tensorflow as tf
from absl import logging

from kerasllm.errors import CheckpointError
from kerasllm.training.errors import TrainingError
from kerasllm.training.optimizer import averaged_weights, create_optimizer
from kerasllm.training.preemption import Preempted, PreemptionSignal
from kerasllm.training.seeding import set_global_seed
from kerasllm.training.strategy import is_chief

TOKENS = "tokens"
# The index, within one call of the train function, of its first step whose loss
# or gradient norm is NaN or infinite (-1: none).
FIRST_NONFINITE = "first_nonfinite_step"
# The checkpoint's entry for the tasks' RNG states (see rng_states).
RNG = "rng"


@dataclasses.dataclass
class TrainResult:
    """What a finished `train` call leaves: the trained task (for the exporter),
    its optimizer, the step reached, and the last progress line's numbers."""

    task: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: int
    metrics: dict  # averages over the last logging window (empty if nothing ran)
    tokens_per_second: float


def ensure_writable(directory):
    """Creates `directory` and proves a file can be written there."""
    try:
        os.makedirs(directory, exist_ok=True)
        # A name of its own: the workers of a multi-worker run probe model_dir at once.
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_probe_") as probe:
            probe.write(b"ok")
    except OSError as error:
        raise TrainingError(f"cannot write to model_dir {directory}: {error.strerror or error}; "
                            "choose a writable --model_dir") from None


def worker_dir(model_dir, strategy):
    """Where this worker writes: model_dir on the chief, a scratch directory on the
    others (every worker must take part in saving, only the chief's copy is kept)."""
    if is_chief(strategy):
        return model_dir
    return os.path.join(model_dir, f".worker_{strategy.cluster_resolver.task_id}")


def checkpointed_step(model_dir):
    """The step of the newest checkpoint `train` wrote to model_dir (0 if none)."""
    path = tf.train.latest_checkpoint(model_dir)
    return int(path.rsplit("-", 1)[1]) if path else 0


def checkpoint_paths(model_dir):
    """The checkpoints `train` keeps in model_dir, oldest first (read-only: the
    chief's CheckpointManager alone writes and deletes them)."""
    state = tf.train.get_checkpoint_state(model_dir)
    return list(state.all_model_checkpoint_paths) if state else []


def _first_line(error):
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return message.strip().splitlines()[0][:300]


def rng_states(task):
    """The state variable of every Keras SeedGenerator in `task` (its dropout
    layers'), which tf.train.Checkpoint does not reach through the task: without
    them a resumed run would replay the first steps' dropout masks."""
    states, seen = [], set()
    for layer in task._flatten_layers():
        for generator in getattr(layer, "_seed_generators", ()):
            if id(generator.state) not in seen:
                seen.add(id(generator.state))
                states.append(generator.state)
    return states


def _restore(checkpoint, path, without_rng):
    """Restores `path` into `checkpoint`. When only its dropout RNG states do not
    fit (a checkpoint written before they were saved, or by a run with other
    dropout settings, hence other dropout layers), restores the rest, strictly,
    into `without_rng` (a dict of checkpoint's objects less the states), and warns.
    """
    status = checkpoint.restore(path)
    try:
        status.assert_consumed()
        return
    except AssertionError:
        status.expect_partial()
        if without_rng is None:
            raise
    reader = tf.train.load_checkpoint(path)
    dtypes = reader.get_variable_to_dtype_map()
    # Stand-ins take the saved states, so that everything else is still checked
    # to be restored exactly (assert_consumed), not just present.
    rng_keys = sorted((name for name in dtypes if name.startswith(f"{RNG}/")),
                      key=lambda name: int(name.split("/")[1]))
    shapes = reader.get_variable_to_shape_map()
    stand_ins = [tf.Variable(tf.zeros(shapes[name], dtypes[name])) for name in rng_keys]
    status = tf.train.Checkpoint(**without_rng, **({RNG: stand_ins} if stand_ins else {})
                                 ).restore(path)
    try:
        status.assert_consumed()
    except AssertionError:
        status.expect_partial()
        raise
    logging.warning("%s holds %d dropout RNG states, which do not fit this model's dropout "
                    "layers (an older checkpoint, or other dropout settings): the resumed run "
                    "draws its dropout masks afresh", path, len(stand_ins))


def restore_latest(checkpoint, paths, model_dir, without_rng=None):
    """Restores the newest of `paths` (model_dir's checkpoints, oldest first) that
    can be read; returns its path (None if there is none).

    A checkpoint whose files cannot be read (cut short by a crash or a full disk)
    is skipped with a warning naming it, and the one before it is tried. One that
    reads but does not fit the task (another model's) stops the run. Either way
    no file is touched. `without_rng`: {name: object} of `checkpoint` less its RNG
    states, to read checkpoints whose states do not fit (see _restore).
    """
    skipped = []
    for path in reversed(paths):
        try:
            _restore(checkpoint, path, without_rng)
        # A missing variable is an AssertionError, a shape mismatch a ValueError.
        except (AssertionError, ValueError) as error:
            raise CheckpointError(
                f"the checkpoint {path} in {model_dir} does not fit this model "
                f"({_first_line(error)}); resume with the settings that wrote it, or start "
                "fresh with a new --model_dir") from None
        # A truncated file surfaces as IndexError from the reader, or an OpError.
        except (IndexError, tf.errors.OpError) as error:
            logging.warning("skipping checkpoint %s: it cannot be read (%s)", path,
                            _first_line(error))
            skipped.append(path)
            continue
        if skipped:
            logging.warning("resuming from %s, the newest complete checkpoint", path)
        return path
    if skipped:
        raise CheckpointError(
            f"every checkpoint in {model_dir} is damaged ({', '.join(skipped)}); restore "
            "them from a backup, or start fresh with a new --model_dir")
    return None


def count_tokens(batch):
    """The tokens of a batch, for throughput: the real (non-padding) ones where the
    batch marks padding (`padding_mask`, or `*_padding_mask` per sequence as in
    seq2seq), else every id of its `*token_ids` features."""
    masks = [v for k, v in batch.items() if k.endswith("padding_mask")]
    ids = [v for k, v in batch.items() if k.endswith("token_ids")]
    if not masks and not ids:
        raise TrainingError(f"a training batch needs token_ids or a padding_mask to count "
                            f"tokens, found only {sorted(batch)}")
    if masks:
        return tf.add_n([tf.reduce_sum(tf.cast(m, tf.float32)) for m in masks])
    return tf.add_n([tf.cast(tf.size(i), tf.float32) for i in ids])


def make_train_function(task, optimizer, strategy, config):
    """A tf.function running `num_steps` optimizer steps from a distributed iterator,
    returning the metrics averaged over those steps (with `gradient_norm`, the
    global norm of each step's gradient before clipping), the tokens they saw
    (summed) and FIRST_NONFINITE. Under float16 loss scaling an overflowing
    gradient is no fault (the optimizer skips that step and lowers the scale), so
    only the loss is checked there.

    Gradient accumulation happens here, not in Keras' optimizer: its
    `gradient_accumulation_steps` puts the cross-replica all-reduce inside a
    `cond`, which `strategy.run` under MirroredStrategy rejects ("merge_call
    called while defining a new graph"), and it would clip each replica's partial
    gradient. Here each replica sums its micro-batch gradients, one all-reduce
    follows, and the optimizer (so the learning-rate schedule) steps once.
    """
    variables = task.trainable_variables
    accum = config.grad_accum_steps
    # Each replica's mean loss over one micro-batch, divided so that the all-reduced
    # sum of gradients is the gradient of the mean loss over the global batch.
    loss_divisor = float(strategy.num_replicas_in_sync * accum)

    def micro_batch_gradients(batch):
        with tf.GradientTape() as tape:
            loss, metrics = task.compute_loss_and_metrics(batch, training=True)
            scaled = optimizer.scale_loss(loss / loss_divisor)
        return tape.gradient(scaled, variables), dict(metrics, loss=loss)

    # A function of its own, traced once however many micro-batches call it. With
    # jit_compile, XLA compiles this forward and backward pass, the bulk of the
    # work; the all-reduce and the optimizer update stay outside, as
    # synchronisation points inside a nested tf.function fail under MirroredStrategy.
    micro_batch_gradients = tf.function(micro_batch_gradients, jit_compile=config.jit_compile)

    def replica_step(batches):
        grads, metrics_sum, tokens = None, None, 0.0
        for batch in batches:
            g, metrics = micro_batch_gradients(batch)
            # Embedding gradients arrive as IndexedSlices, which do not add up.
            grads = g if grads is None else [
                tf.convert_to_tensor(a) + tf.convert_to_tensor(b) for a, b in zip(grads, g)]
            metrics_sum = metrics if metrics_sum is None else {
                k: metrics_sum[k] + metrics[k] for k in metrics}
            tokens += count_tokens(batch)
        grads = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, grads)
        # Embedding gradients stay sparse across the all-reduce; clipping and the
        # Adam step would each turn them into the dense table, so do it once here.
        grads = [None if g is None else tf.convert_to_tensor(g) for g in grads]
        gradient_norm = tf.linalg.global_norm([g for g in grads if g is not None])
        optimizer.apply(grads, variables)
        metrics = {k: v / accum for k, v in metrics_sum.items()}
        metrics["gradient_norm"] = gradient_norm / optimizer.scale_loss(1.0)
        return metrics, tokens

    names = []  # the metric names, known once the step has been traced
    checked = ["loss"] + ([] if config.mixed_precision == "mixed_float16"
                          else ["gradient_norm"])

    @tf.autograph.experimental.do_not_convert
    def one_step_as_vector(iterator):
        """One optimizer step; its metrics (then the tokens) as one float32 vector,
        so the loop below carries a fixed-type value and traces the step once."""
        batches = [next(iterator) for _ in range(accum)]
        metrics, tokens = strategy.run(replica_step, args=(batches,))
        names[:] = sorted(metrics)
        reduced = [strategy.reduce(tf.distribute.ReduceOp.MEAN, metrics[k], axis=None)
                   for k in names]
        reduced.append(strategy.reduce(tf.distribute.ReduceOp.SUM, tokens, axis=None))
        return tf.stack(reduced)

    @tf.function
    def train_steps(iterator, num_steps):
        history = tf.TensorArray(tf.float32, size=num_steps)
        for i in tf.range(num_steps):
            history = history.write(i, one_step_as_vector(iterator))
        history = history.stack()
        means = tf.reduce_mean(history[:, :-1], axis=0)
        faults = tf.reduce_any(tf.logical_not(tf.math.is_finite(
            tf.gather(history, [names.index(name) for name in checked], axis=1))), axis=1)
        first_fault = tf.where(tf.reduce_any(faults),
                               tf.argmax(tf.cast(faults, tf.int32), output_type=tf.int32), -1)
        return dict(zip(names, tf.unstack(means)),
                    **{TOKENS: tf.reduce_sum(history[:, -1]), FIRST_NONFINITE: first_fault})

    return train_steps


def format_progress(step, total, metrics, learning_rate, tokens_per_second):
    """One progress line: `step 120/500  loss 6.210  mlm_accuracy 0.100  lr 9.6e-05  1850 tok/s`."""
    ordered = sorted(metrics.items(), key=lambda item: (item[0] != "loss", item[0]))
    shown = "  ".join(f"{k} {v:.3f}" for k, v in ordered)
    return f"step {step}/{total}  {shown}  lr {learning_rate:.1e}  {tokens_per_second:.0f} tok/s"


class ProgressLog:
    """Averages the metrics over each window of `log_every` steps and reports them
    as a progress line, TensorBoard scalars and the `on_log` callback (which sees
    the task with its averaged weights, if the optimizer keeps an average)."""

    def __init__(self, writer, total_steps, optimizer, task, on_log=None):
        self.writer, self.total_steps = writer, total_steps
        self.optimizer, self.task, self.on_log = optimizer, task, on_log
        self.metrics, self.tokens_per_second = {}, 0.0
        self._start_window()

    def _start_window(self):
        self.sums, self.tokens, self.steps = {}, 0.0, 0
        self.start = time.perf_counter()

    def add(self, outputs, num_steps):
        """Adds what `train_steps` returned for `num_steps` steps."""
        outputs = {k: float(v) for k, v in outputs.items() if k != FIRST_NONFINITE}
        self.tokens += outputs.pop(TOKENS)
        for k, v in outputs.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * num_steps
        self.steps += num_steps

    def report(self, step):
        self.tokens_per_second = self.tokens / max(time.perf_counter() - self.start, 1e-9)
        self.metrics = {k: v / self.steps for k, v in self.sums.items()}
        learning_rate = float(self.optimizer.learning_rate)
        logging.info("%s", format_progress(step, self.total_steps, self.metrics,
                                           learning_rate, self.tokens_per_second))
        with self.writer.as_default(step=step):
            for k, v in self.metrics.items():
                tf.summary.scalar(k, v)
            tf.summary.scalar("learning_rate", learning_rate)
            tf.summary.scalar("tokens_per_second", self.tokens_per_second)
        self.writer.flush()
        if self.on_log:
            with averaged_weights(self.optimizer, self.task.trainable_variables):
                self.on_log(step, self.metrics)
        self._start_window()


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


START_BATCH = "start_batch"


def can_seek(dataset_fn):
    """True if `dataset_fn` takes a `start_batch` argument (see `train`)."""
    try:
        return START_BATCH in inspect.signature(dataset_fn).parameters
    except (TypeError, ValueError):  # a builtin or C callable: no signature
        return False


def dataset_fn_at_step(dataset_fn, step, grad_accum_steps):
    """`dataset_fn` wrapped to start each input pipeline at the batch it reaches
    after `step` optimizer steps: every replica takes one batch per micro-batch,
    and a pipeline feeds num_replicas_in_sync / num_input_pipelines replicas."""
    seekable = can_seek(dataset_fn)

    def positioned(input_context):
        replicas_per_pipeline = (input_context.num_replicas_in_sync
                                 // input_context.num_input_pipelines)
        start = step * grad_accum_steps * replicas_per_pipeline
        if seekable:
            if start:
                logging.info("input pipeline %d starts at batch %d",
                             input_context.input_pipeline_id, start)
            return dataset_fn(input_context, start_batch=start)
        dataset = dataset_fn(input_context)
        if start:
            logging.warning("input pipeline %d: the dataset_fn takes no start_batch, so "
                            "the %d batches already trained on are read again and dropped",
                            input_context.input_pipeline_id, start)
            dataset = dataset.skip(start)
        return dataset

    return positioned


def num_workers(strategy):
    """Worker processes taking part in `strategy` (1 unless multi-worker)."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    jobs = strategy.cluster_resolver.cluster_spec().as_dict()
    return sum(len(jobs.get(job, ())) for job in ("chief", "worker"))


def check_workers_agree(strategy, step, restored):
    """Raises CheckpointError unless every worker resumed at `step` (a worker that
    cannot read model_dir would start afresh, training a different model)."""
    if num_workers(strategy) < 2:
        return
    steps = strategy.gather(strategy.experimental_distribute_values_from_function(
        lambda _: tf.constant([step], tf.int64)), axis=0).numpy().tolist()
    if len(set(steps)) > 1:
        raise CheckpointError(
            f"the workers resumed at different steps ({', '.join(map(str, steps))}, one per "
            f"replica; this one from {restored or 'no checkpoint'}): every worker must read "
            "the chief's checkpoints in --model_dir, so put it on storage they all share")


# TensorFlow names the peer it lost in its message: the task that stopped sending
# heartbeats (coordination service), or the remote end of a failed RPC.
_PEER_PATTERNS = (r"stopped sending heartbeats\):\s*(/job:\w+/replica:\d+/task:\d+)",
                  r"remote target (/job:\w+/replica:\d+/task:\d+)")
_TASK_NAME = r"/job:\w+/replica:\d+/task:\d+"
# What a collective op raises when a peer dies or cannot be reached.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
               tf.errors.AbortedError)


def lost_peer(error, this_task):
    """The task (e.g. /job:worker/replica:0/task:1) a collective op's error names
    as lost; failing the known phrasings, the first task it names other than
    `this_task`, the worker that caught it."""
    message = getattr(error, "message", None) or str(error)
    for pattern in _PEER_PATTERNS:
        match = re.search(pattern, message)
        if match:
            return match[1]
    return next((task for task in re.findall(_TASK_NAME, message) if task != this_task),
                None)


def lost_worker_error(error, strategy, step, latest):
    resolver = strategy.cluster_resolver
    peer = lost_peer(error, f"/job:{resolver.task_type}/replica:0/task:{resolver.task_id}")
    cause = ("an error from TensorFlow's collective ops: " + _first_line(error)
             if peer is None else "its process ended or its machine cannot be reached")
    outcome = (f"stopped, so {latest} stays the newest: start every worker again with the "
               "same command to resume from it" if latest else
               "stopped before the first checkpoint: start every worker again with the same "
               "command to start over")
    return TrainingError(f"lost contact with worker {peer or '(unnamed)'} after step {step} "
                         f"({cause}); {outcome}")


@contextlib.contextmanager
def _stop_on_lost_worker(strategy, model_dir, reached_step):
    """Under a multi-worker strategy, a collective op failing for a lost peer (while
    the variables are broadcast, the workers compare steps, or a step runs) ends
    the run with one TrainingError line instead of TensorFlow's page of RPC
    detail. `reached_step`: () -> the step trained to."""
    if num_workers(strategy) < 2:
        yield
        return
    try:
        yield
    except PEER_ERRORS as error:
        latest = tf.train.latest_checkpoint(model_dir)
        raise lost_worker_error(error, strategy, reached_step(), latest) from None


def train(build_task, dataset_fn, config, strategy, *, on_log=None):
    """Trains the task from `build_task()` on `dataset_fn` up to `config.train_steps`,
    resuming from the newest checkpoint in `config.model_dir`.

    Args:
      build_task: () -> task, a keras.Model with `build_for_inputs()` and
        `compute_loss_and_metrics(batch, training)`; called inside
        `strategy.scope()` under the dtype policy `config.mixed_precision`.
      dataset_fn: (tf.distribute.InputContext, start_batch=0) -> tf.data.Dataset
        of batches of `input_context.get_per_replica_batch_size(
        config.micro_batch_size)` examples, repeating forever, from batch
        `start_batch` of that input pipeline's stream on. A resumed run passes the
        number of batches the pipeline had delivered by the checkpoint's step, so
        it must be the same stream on every run (seeded); see the module
        docstring. A dataset_fn without `start_batch` is given
        `dataset_fn(input_context).skip(start_batch)`.
      config: a TrainConfig.
      strategy: a tf.distribute.Strategy (see `create_strategy`).
      on_log: optional callback(step, metrics) at every progress line; with
        config.ema_momentum it sees the task holding the averaged weights.
    Returns:
      TrainResult; if the checkpoint is already at `train_steps`, without training.
      With config.ema_momentum the task holds the averaged weights (the
      checkpoints keep the training weights and the average).
    Raises:
      TrainingError: model_dir is not writable, the batch does not split over
        the replicas, or (multi-worker) another worker was lost.
      CheckpointError: the checkpoint in model_dir does not fit the task or is
        damaged, or the workers did not all resume from it.
    """
    ensure_writable(config.model_dir)
    if config.deterministic:
        # Process-wide: also what the task's and the input pipeline's ops run under.
        tf.config.experimental.enable_op_determinism()
    replicas = strategy.num_replicas_in_sync
    if config.micro_batch_size % replicas:
        raise TrainingError(
            f"global batch size {config.global_batch_size} does not split evenly over "
            f"{config.grad_accum_steps} accumulation steps x {replicas} replicas; use a "
            f"multiple of {config.grad_accum_steps * replicas}")
    set_global_seed(config.seed)
    current = 0  # the step reached: read by the lost-worker message when it is raised
    with _stop_on_lost_worker(strategy, config.model_dir, lambda: current):
        with strategy.scope():
            with global_dtype_policy(config.mixed_precision):
                task = build_task()
                task.build_for_inputs()
            optimizer = create_optimizer(config, task)
            optimizer.build(task.trainable_variables)
            step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        saved = {"task": task, "optimizer": optimizer, "step": step}
        states = rng_states(task)
        checkpoint = tf.train.Checkpoint(**saved, **({RNG: states} if states else {}))
        directory = worker_dir(config.model_dir, strategy)
        manager = tf.train.CheckpointManager(checkpoint, directory, config.keep_checkpoints,
                                             checkpoint_name="ckpt")
        # Every worker resumes from the chief's checkpoints; the others' own copies in
        # their scratch directories only exist because saving needs every worker.
        restored = restore_latest(checkpoint, checkpoint_paths(config.model_dir),
                                  config.model_dir,
                                  without_rng=saved if states else None)
        current = int(step.numpy())
        check_workers_agree(strategy, current, restored)
        if restored:
            logging.info("resumed from %s at step %d", restored, current)
        if current >= config.train_steps:
            logging.info("already trained to step %d of %d; nothing to do",
                         current, config.train_steps)
            optimizer.finalize_variable_values(task.trainable_variables)
            return TrainResult(task, optimizer, current, {}, 0.0)

        iterator = iter(strategy.distribute_datasets_from_function(
            dataset_fn_at_step(dataset_fn, current, config.grad_accum_steps)))
        train_steps = make_train_function(task, optimizer, strategy, config)
        progress = ProgressLog(tf.summary.create_file_writer(os.path.join(directory, "train")),
                               config.train_steps, optimizer, task, on_log)
        # SIGTERM is noted, not obeyed at once: a checkpoint is saved at the next step.
        with PreemptionSignal() as preemption:
            while current < config.train_steps:
                # Each tf.function call stops at the next progress line or checkpoint.
                boundary = min(config.train_steps,
                               (current // config.log_every + 1) * config.log_every,
                               (current // config.checkpoint_every + 1) * config.checkpoint_every)
                num_steps = min(config.steps_per_loop, boundary - current)
                outputs = train_steps(iterator, tf.constant(num_steps))
                fault = int(outputs[FIRST_NONFINITE])
                if fault >= 0:
                    # Raised before anything is saved: the newest checkpoint is the last good one.
                    kept = manager.latest_checkpoint or "no checkpoint"
                    raise TrainingError(
                        f"the loss or the gradient is NaN or infinite at step "
                        f"{current + fault + 1}; stopped without saving, so {kept} stays the "
                        "newest: lower --learning_rate, keep --clip_norm, or check the data "
                        "around that step")
                progress.add(outputs, num_steps)
                step.assign_add(num_steps)
                current += num_steps
                if current % config.log_every == 0 or current == config.train_steps:
                    progress.report(current)
                if (current % config.checkpoint_every == 0 or current == config.train_steps
                        or preemption.received):
                    manager.save(checkpoint_number=current)
                if preemption.received:
                    raise Preempted(f"stopped by SIGTERM at step {current} after saving "
                                    f"{manager.latest_checkpoint}; rerun the same command to "
                                    "resume")

    if not is_chief(strategy):
        shutil.rmtree(directory, ignore_errors=True)
    optimizer.finalize_variable_values(task.trainable_variables)  # the average, if kept
    return TrainResult(task, optimizer, current, progress.metrics, progress.tokens_per_second)
