"""What stops a run midway, each as one TrainingError line naming the checkpoint a
rerun resumes from: a NaN or infinite loss or gradient, and (multi-worker) a lost
worker or workers that resumed at different steps.

A worker that dies stops the others: TensorFlow aborts their collective ops (at
once if the peer's connection is reset, else when the coordination service misses
its heartbeats, about 10 s), and `stop_on_lost_worker` turns that into a
TrainingError naming the lost worker.
"""
import contextlib
import re

import tensorflow as tf

from kerasllm.errors import CheckpointError
from kerasllm.training.errors import TrainingError, first_line

# TensorFlow names the peer it lost in its message: the task that stopped sending
# heartbeats (coordination service), or the remote end of a failed RPC.
_PEER_PATTERNS = (r"stopped sending heartbeats\):\s*(/job:\w+/replica:\d+/task:\d+)",
                  r"remote target (/job:\w+/replica:\d+/task:\d+)")
_TASK_NAME = r"/job:\w+/replica:\d+/task:\d+"
# What a collective op raises when a peer dies or cannot be reached.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
               tf.errors.AbortedError)


def nonfinite_error(step, latest):
    """The error for a NaN or infinite loss or gradient at `step`, raised before
    anything is saved, so `latest` (a path or None) stays the newest checkpoint."""
    return TrainingError(
        f"the loss or the gradient is NaN or infinite at step {step}; stopped without "
        f"saving, so {latest or 'no checkpoint'} stays the newest: lower --learning_rate, "
        "keep --clip_norm, or check the data around that step")


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
    cause = ("an error from TensorFlow's collective ops: " + first_line(error)
             if peer is None else "its process ended or its machine cannot be reached")
    outcome = (f"stopped, so {latest} stays the newest: start every worker again with the "
               "same command to resume from it" if latest else
               "stopped before the first checkpoint: start every worker again with the same "
               "command to start over")
    return TrainingError(f"lost contact with worker {peer or '(unnamed)'} after step {step} "
                         f"({cause}); {outcome}")


@contextlib.contextmanager
def stop_on_lost_worker(strategy, model_dir, reached_step):
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
