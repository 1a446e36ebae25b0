"""Scoring the task while it trains, and keeping its best weights: what every trainer
passes to `kerasllm.training.loop.train` as `on_evaluate`.

At each evaluation step `Validation` scores the task on held-out data with a
score function (task -> {name: float}: HeldOutLoss, TranslationEvaluator,
LabelEvaluator, AnswerEvaluator, or several merged), logs one line, writes the
scores as TensorBoard scalars under <model_dir>/validation, appends the record
{"step", "train_seconds", **scores} to the run's history (train_seconds: the time
spent in training steps so far, see kerasllm.training.progress), and keeps the
task's weights when they are the best yet by one score. In model_dir:

    validation/history.json  {"metric", "larger_is_better", "records": [...], "kept": [steps]}
    best/step-<N>.*          the weights of each kept step (see best_weights.WeightStore)

so a resumed run's scores compete with those of the processes before it, and a
rerun can export the best weights with the whole history.

A step is scored before its checkpoint is written, so a process may die between
the two; the resumed run trains those steps again, and the records of steps
after the one it resumed from are dropped. The weights of the best before the
newest best are kept too, so that a best is still there after such a drop.
Weights are written before the history names them: it never names weights that
are not complete.
"""
import json
import os

import tensorflow as tf
from absl import logging

from kerasllm.atomic_files import write_atomically
from kerasllm.evaluation.best_weights import WeightStore
from kerasllm.training.errors import TrainingError

HISTORY_FILE = os.path.join("validation", "history.json")


def merged(*scores):
    """One score function of several: task -> their scores in one dict."""
    return lambda task: {name: value for score in scores for name, value in score(task).items()}


def scores_of(record):
    """The scores of a history record, without its step and training time."""
    return {name: value for name, value in record.items()
            if name not in ("step", "train_seconds")}


def format_scores(scores):
    """`accuracy 0.812  macro_f1 0.8051`, in the dict's order."""
    return "  ".join(f"{name} {value:.4g}" for name, value in scores.items())


class Validation:
    """Scores the task at evaluation steps and keeps the best weights (see the module
    docstring).

    Args:
      score: task -> {score name: float}.
      metric: the score whose best value picks the weights kept.
      model_dir: the run's directory, on the chief; None on the other workers of a
        multi-worker run, where nothing is written or kept but the records.
      larger_is_better: False for a loss.
    """

    def __init__(self, score, metric, model_dir=None, *, larger_is_better=True):
        self.score, self.metric, self.larger_is_better = score, metric, larger_is_better
        self.model_dir = model_dir
        self.records, self.kept = [], []  # kept: steps whose weights are stored
        self._resumed = False
        self._weights = WeightStore(os.path.join(model_dir, "best")) if model_dir else None
        self._writer = None
        if model_dir:
            self._load()

    def _load(self):
        path = os.path.join(self.model_dir, HISTORY_FILE)
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if (saved["metric"], saved["larger_is_better"]) != (self.metric, self.larger_is_better):
            raise TrainingError(f"{self.model_dir} keeps the weights with the best "
                                f"{saved['metric']!r}, not {self.metric!r}; use another "
                                "--model_dir")
        self.records, self.kept = saved["records"], saved["kept"]

    def resume(self, step):
        """Drops the records (and kept weights) of steps after `step`, the checkpoint a
        run resumed from: a process that died scored them, and they are trained again."""
        dropped = [record["step"] for record in self.records if record["step"] > step]
        if dropped:
            logging.warning("dropping the validation of steps %s: scored after step %d, the "
                            "checkpoint resumed from, by a process that stopped before "
                            "saving them", ", ".join(map(str, dropped)), step)
        self.records = [record for record in self.records if record["step"] <= step]
        self.kept = [kept for kept in self.kept if kept <= step]
        self._resumed = True

    def _better(self, record, than):
        """True if `record` scores at least as well as `than`: of equal scores the later
        weights, which trained longer, are kept (a score too coarse to tell steps
        apart, such as BLEU of two-word sentences, keeps the newest)."""
        value, best = record[self.metric], than[self.metric]
        return value >= best if self.larger_is_better else value <= best

    @property
    def best(self):
        """The record of the best step whose weights are kept (the later of equals),
        None before any."""
        best = None
        for record in self.records:
            if record["step"] in self.kept and (best is None or self._better(record, best)):
                best = record
        return best

    def __call__(self, point):
        """Scores `point.task` (a kerasllm.training.loop.TrainPoint); returns the record."""
        if not self._resumed:
            self.resume(point.start_step)
        scores = self.score(point.task)
        record = {"step": point.step, "train_seconds": round(point.train_seconds, 3), **scores}
        previous = self.best
        self.records = [r for r in self.records if r["step"] != point.step] + [record]
        new_best = previous is None or self._better(record, previous)
        if new_best:
            self.kept = [previous["step"], point.step] if previous else [point.step]
        logging.info("step %d validation: %s%s", point.step, format_scores(scores),
                     "  (best so far)" if new_best else "")
        if self.model_dir:
            self._save(point, scores, new_best)
        return record

    def _save(self, point, scores, new_best):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(
                os.path.join(self.model_dir, "validation"))
        with self._writer.as_default(step=point.step):
            for name, value in scores.items():
                tf.summary.scalar(name, value)
        self._writer.flush()
        if new_best:
            self._weights.write(point.step, point.task)
        write_atomically(os.path.join(self.model_dir, HISTORY_FILE), json.dumps(
            {"metric": self.metric, "larger_is_better": self.larger_is_better,
             "records": self.records, "kept": self.kept}, indent=1))
        self._weights.keep_only(self.kept)

    def restore_best(self, task):
        """Loads the best kept weights into `task` (on the chief); returns their record,
        or None (task unchanged) before any."""
        best = self.best
        if best is not None:
            self._weights.read(best["step"], task)
        return best
