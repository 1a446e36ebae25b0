"""A run's checkpoints in its model_dir: the newest few, restored exactly on resume.

A checkpoint holds the weights (under LoRA only the trainable ones, see
checkpointed_task), the optimizer (Adam's moments and `iterations`,
hence the learning-rate schedule's position, any weight average or loss scale),
the Keras RNG states (dropout) and the step; the input position follows from the
step (see input_position). Under MultiWorkerMirroredStrategy every worker takes
part in saving, but only the chief's copy in model_dir is kept (storage all
workers share, as TensorFlow requires), and every worker restores from it.
"""
import os
import shutil
import tempfile

import tensorflow as tf
from absl import logging

from kerasllm.errors import CheckpointError
from kerasllm.training.errors import TrainingError, first_line
from kerasllm.training.strategy import is_chief

# The checkpoint's entry for the tasks' RNG states (see rng_states).
RNG = "rng"


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


def checkpointed_task(task):
    """What a checkpoint keeps of `task`: all of it; or, under LoRA (a backbone with
    lora_settings), its trainable variables alone by path, since every run loads
    the frozen base afresh: SmolLM2's adapters take megabytes, the base 540 MB."""
    backbone = getattr(task, "backbone", None)
    if getattr(backbone, "lora_settings", None) is None:
        return task
    # Keyed by the path below the task and backbone, whose names Keras numbers per
    # instance (gpt_causal_lm_2) and which a path holds only when built through them.
    def key(path):
        for name in (task.name, backbone.name):
            path = path[len(name) + 1:] if path.startswith(name + "/") else path
        return path

    return {key(variable.path): variable for variable in task.trainable_variables}

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
                f"({first_line(error)}); resume with the settings that wrote it, or start "
                "fresh with a new --model_dir") from None
        # A truncated file surfaces as IndexError from the reader, or an OpError.
        except (IndexError, tf.errors.OpError) as error:
            logging.warning("skipping checkpoint %s: it cannot be read (%s)", path,
                            first_line(error))
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


class Checkpoints:
    """The checkpoints of a TrainState (task, optimizer, step and the task's dropout
    RNG states): the newest `keep` are kept, in this worker's directory."""

    def __init__(self, state, model_dir, strategy, keep):
        self.state, self.model_dir, self.strategy = state, model_dir, strategy
        saved = {"task": checkpointed_task(state.task), "optimizer": state.optimizer,
                 "step": state.step}
        states = rng_states(state.task)
        self._checkpoint = tf.train.Checkpoint(**saved, **({RNG: states} if states else {}))
        self._without_rng = saved if states else None
        self.directory = worker_dir(model_dir, strategy)
        self._manager = tf.train.CheckpointManager(self._checkpoint, self.directory, keep,
                                                   checkpoint_name="ckpt")
        self.restored = None  # the path resumed from, once restore() found one

    def restore(self):
        """Restores the chief's newest readable checkpoint; returns the step it holds
        (0 without one)."""
        # Every worker resumes from the chief's checkpoints; the others' own copies in
        # their scratch directories only exist because saving needs every worker.
        self.restored = restore_latest(self._checkpoint, checkpoint_paths(self.model_dir),
                                       self.model_dir, without_rng=self._without_rng)
        step = int(self.state.step.numpy())
        if self.restored:
            logging.info("resumed from %s at step %d", self.restored, step)
        return step

    def save(self, step):
        self._manager.save(checkpoint_number=step)

    @property
    def latest(self):
        """The newest checkpoint's path, None before the first."""
        return self._manager.latest_checkpoint

    def remove_scratch(self):
        """Deletes a non-chief worker's scratch copies once the run is done."""
        if not is_chief(self.strategy):
            shutil.rmtree(self.directory, ignore_errors=True)
