"""The one training loop: `strategy.run` steps, checkpoints with resume, progress
lines, and hooks that see the task.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585),
so every model family trains here instead. A task is a keras.Model with
`build_for_inputs()` (creates its variables) and
`compute_loss_and_metrics(batch, training) -> (loss, {name: scalar})`, the
contract of kerasllm.models.task.TaskModel, which the loop only duck-types: it
knows no model family.

Resuming is exact: a run killed at any moment (even `kill -9`) and started again
with the same command continues from the newest checkpoint as if never stopped;
with `config.deterministic` (tf.config.experimental.enable_op_determinism) its
weights equal an uninterrupted run's bit for bit. The parts, one module each:

    state.py           the task, its optimizer and the step, built in the strategy's scope
    checkpoints.py     what a checkpoint holds; restoring the newest readable one
    input_position.py  where each input pipeline resumes: it follows from the step
    step.py            the compiled step: micro-batches, one all-reduce, NaN detection
    progress.py        progress lines, TensorBoard scalars, the training time
    faults.py          NaN or infinite numbers, lost or disagreeing workers: one line each
    preemption.py      SIGTERM: a checkpoint at the next step, then stop
"""
import dataclasses
import time

import keras
import tensorflow as tf
from absl import logging

from kerasllm.training.checkpoints import Checkpoints, ensure_writable
from kerasllm.training.errors import TrainingError
from kerasllm.training.faults import check_workers_agree, nonfinite_error, stop_on_lost_worker
from kerasllm.training.input_position import dataset_fn_at_step
from kerasllm.training.optimizer import averaged_weights
from kerasllm.training.preemption import Preempted, PreemptionSignal
from kerasllm.training.progress import ProgressLog, read_progress
from kerasllm.training.seeding import set_global_seed
from kerasllm.training.state import build_state
from kerasllm.training.step import FIRST_NONFINITE, make_train_function

# tests/training/test_kill_resume.py imports these names from here.
from kerasllm.training.checkpoints import checkpointed_step  # noqa: F401,E402
from kerasllm.training.faults import lost_peer  # noqa: F401,E402


@dataclasses.dataclass
class TrainResult:
    """What a finished `train` call leaves: the trained task (for the exporter), its
    optimizer, the step reached and the one this call started from, the last
    progress window's numbers and the training time (see progress.py)."""

    task: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: int
    start_step: int
    metrics: dict  # averages over the last progress window (recorded, if none ran here)
    tokens_per_second: float  # 0 if nothing ran here
    train_seconds: float


@dataclasses.dataclass(frozen=True)
class TrainPoint:
    """What `on_evaluate` sees at an evaluation step: the task (holding the weight
    average, with config.ema_momentum), the last progress window's metrics, the
    training time so far (see progress.py), and the step this process started at
    (scores recorded after it by a process that died are of steps trained again)."""

    step: int
    task: keras.Model
    metrics: dict
    train_seconds: float
    start_step: int


def train(build_task, dataset_fn, config, strategy, *, on_log=None, on_evaluate=None):
    """Trains the task from `build_task()` on `dataset_fn` up to `config.train_steps`,
    resuming from the newest checkpoint in `config.model_dir`.

    Args:
      build_task: () -> task, a keras.Model with `build_for_inputs()` and
        `compute_loss_and_metrics(batch, training)`; called inside
        `strategy.scope()` under the dtype policy `config.mixed_precision`.
      dataset_fn: (tf.distribute.InputContext, start_batch=0) -> tf.data.Dataset
        of batches of `input_context.get_per_replica_batch_size(
        config.micro_batch_size)` examples, repeating forever, from batch
        `start_batch` of that input pipeline's stream on; it must be the same
        stream on every run (seeded): see input_position.py. A dataset_fn without
        `start_batch` is given `dataset_fn(input_context).skip(start_batch)`.
      config: a TrainConfig.
      strategy: a tf.distribute.Strategy (see `create_strategy`).
      on_log: optional (step, metrics) -> None at every progress line.
      on_evaluate: optional (TrainPoint) -> None every `config.evaluation_interval`
        steps and at the last, before that step's checkpoint is saved.
      Both see the task holding the weight average, with config.ema_momentum.
    Returns:
      TrainResult; if the checkpoint is already at `train_steps`, without training.
      With config.ema_momentum the task holds the averaged weights (the
      checkpoints keep the training weights and the average).
    Raises:
      TrainingError: model_dir is not writable, the batch does not split over
        the replicas, a loss or gradient is not finite, or (multi-worker)
        another worker was lost; Preempted (one) after SIGTERM.
      CheckpointError: the checkpoint in model_dir does not fit the task or is
        damaged, or the workers did not all resume from it.
    """
    _prepare(config, strategy)
    reached = [0]  # the step trained to, for the lost-worker message
    with stop_on_lost_worker(strategy, config.model_dir, lambda: reached[0]):
        state = build_state(build_task, config, strategy)
        checkpoints = Checkpoints(state, config.model_dir, strategy, config.keep_checkpoints)
        start = reached[0] = checkpoints.restore()
        check_workers_agree(strategy, start, checkpoints.restored)
        recorded = read_progress(config.model_dir, start)  # the chief's record
        if start >= config.train_steps:
            logging.info("already trained to step %d of %d; nothing to do", start,
                         config.train_steps)
            return _finish(state, checkpoints, start, start, recorded[1], 0.0, recorded[0])
        iterator = iter(strategy.distribute_datasets_from_function(
            dataset_fn_at_step(dataset_fn, start, config.grad_accum_steps)))
        train_steps = make_train_function(state.task, state.optimizer, strategy, config)
        progress = ProgressLog(checkpoints.directory, recorded, config.train_steps,
                               state.optimizer)
        logging.info("tracing the training step%s: the first step takes longer",
                     " and compiling it with XLA" if config.jit_compile else "")
        # SIGTERM is noted, not obeyed at once: a checkpoint is saved at the next step.
        with PreemptionSignal() as preemption:
            while reached[0] < config.train_steps:
                current = reached[0]
                # The first call traces the step function: one step, left out of timing.
                num_steps = 1 if current == start else min(
                    config.steps_per_loop, _next_stop(current, config) - current)
                began = time.perf_counter()
                outputs = {k: v.numpy() for k, v in
                           train_steps(iterator, tf.constant(num_steps)).items()}
                seconds = time.perf_counter() - began
                if outputs[FIRST_NONFINITE] >= 0:
                    raise nonfinite_error(current + int(outputs[FIRST_NONFINITE]) + 1,
                                          checkpoints.latest)
                state.step.assign_add(num_steps)
                reached[0] = current = current + num_steps
                progress.add(outputs, num_steps, seconds, current)
                _at_step(current, start, config, state, progress, on_log, on_evaluate)
                if _due(current, config.checkpoint_every, config) or preemption.received:
                    progress.record(current)
                    checkpoints.save(current)
                if preemption.received:
                    raise Preempted(f"stopped by SIGTERM at step {current} after saving "
                                    f"{checkpoints.latest}; rerun the same command to resume")
    return _finish(state, checkpoints, start, reached[0], progress.metrics,
                   progress.throughput.tokens_per_second, progress.train_seconds)


def _prepare(config, strategy):
    """Checks what can be checked before anything is built, and seeds the run."""
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


def _due(step, every, config):
    return step % every == 0 or step == config.train_steps


def _next_stop(current, config):
    """The step the next call of the step function ends at: the next progress line,
    evaluation or checkpoint, or the last step."""
    return min(config.train_steps, *((current // every + 1) * every for every in (
        config.log_every, config.evaluation_interval, config.checkpoint_every)))


def _at_step(step, start, config, state, progress, on_log, on_evaluate):
    """The progress line and the hooks due at `step`."""
    logs = _due(step, config.log_every, config)
    evaluates = on_evaluate and _due(step, config.evaluation_interval, config)
    if logs:
        progress.report(step)
    if (logs and on_log) or evaluates:
        with averaged_weights(state.optimizer, state.task.trainable_variables):
            if logs and on_log:
                on_log(step, progress.metrics)
            if evaluates:
                on_evaluate(TrainPoint(step, state.task, progress.metrics,
                                       progress.train_seconds, start))


def _finish(state, checkpoints, start, step, metrics, tokens_per_second, train_seconds):
    checkpoints.remove_scratch()
    state.optimizer.finalize_variable_values(state.task.trainable_variables)  # the average
    return TrainResult(state.task, state.optimizer, step, start, metrics, tokens_per_second,
                       train_seconds)
