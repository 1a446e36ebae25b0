"""The weights of the best evaluation so far, kept beside the training checkpoints.

The training checkpoints are the newest few (for resuming); the model to ship is
the one that scored best on held-out data, which may be older. BestCheckpoint
keeps it in `<model_dir>/best/`: a tf.train.Checkpoint of the task alone plus a
best.json with its step and score, both replaced atomically (written in a
temporary directory, then renamed), so a crash mid-save leaves the previous best.
"""
import json
import os
import shutil
import tempfile

import tensorflow as tf

from kerasllm.training.errors import TrainingError

RECORD_FILE = "best.json"


class BestCheckpoint:
    """Keeps the task's weights at its highest `metric` (a larger-is-better score).

    Args:
      model_dir: the run's directory; the best weights go in model_dir/best.
      metric: the score's name, e.g. "bleu" (recorded, and checked on resume so a
        run never compares scores of different kinds).
    """

    def __init__(self, model_dir, metric):
        self.directory = os.path.join(model_dir, "best")
        self.metric = metric
        self.record = self._read_record()

    def _read_record(self):
        path = os.path.join(self.directory, RECORD_FILE)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        if record.get("metric") != self.metric:
            raise TrainingError(f"{self.directory} keeps the best {record.get('metric')!r}, "
                                f"not {self.metric!r}; use another --model_dir")
        return record

    @property
    def score(self):
        """The best score so far, None before any."""
        return None if self.record is None else self.record["score"]

    def offer(self, task, step, score):
        """Saves `task`'s weights if `score` beats the best so far; True if it did."""
        if self.score is not None and score <= self.score:
            return False
        parent = os.path.dirname(self.directory)
        staging = tempfile.mkdtemp(dir=parent, prefix=".best-")
        try:
            tf.train.Checkpoint(task=task).write(os.path.join(staging, "weights"))
            record = {"metric": self.metric, "score": float(score), "step": int(step)}
            with open(os.path.join(staging, RECORD_FILE), "w", encoding="utf-8") as f:
                json.dump(record, f)
            retired = None
            if os.path.exists(self.directory):
                retired = tempfile.mkdtemp(dir=parent, prefix=".best-old-")
                os.rename(self.directory, os.path.join(retired, "best"))
            os.rename(staging, self.directory)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if retired:
            shutil.rmtree(retired, ignore_errors=True)
        self.record = record
        return True

    def restore(self, task):
        """Loads the best weights into `task`; returns the record ({metric, score,
        step}), or None (task unchanged) when there is no best yet."""
        if self.record is None:
            return None
        tf.train.Checkpoint(task=task).read(
            os.path.join(self.directory, "weights")).assert_existing_objects_matched()
        return self.record
