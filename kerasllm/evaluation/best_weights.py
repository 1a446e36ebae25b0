"""A task's weights (under LoRA its adapters) at chosen steps, kept in one directory in TensorFlow's checkpoint
format (what the training checkpoints use): `step-<N>.index` and `.data-*`."""
import os
import re

import tensorflow as tf

from kerasllm.training.checkpoints import checkpointed_task

_FILE = re.compile(r"step-(\d+)\.(index|data-\d+-of-\d+)$")


class WeightStore:
    """Writes, reads and prunes the weights of a task, one set per step."""

    def __init__(self, directory):
        self.directory = directory

    def _prefix(self, step):
        return os.path.join(self.directory, f"step-{step}")

    def write(self, step, task):
        tf.train.Checkpoint(task=checkpointed_task(task)).write(self._prefix(step))

    def read(self, step, task):
        """Loads the weights of `step` into `task`, every one of them."""
        tf.train.Checkpoint(task=checkpointed_task(task)).read(
            self._prefix(step)).assert_existing_objects_matched()

    def keep_only(self, steps):
        """Deletes the weights of every step not in `steps`."""
        if not os.path.isdir(self.directory):
            return
        for name in os.listdir(self.directory):
            match = _FILE.match(name)
            if match and int(match[1]) not in steps:
                os.remove(os.path.join(self.directory, name))
