"""What a run reports as it trains, and keeps of it.

Every `log_every` steps one line: steps done/total, the window's mean metrics,
the learning rate, tokens/s and steps/s, the elapsed time and an ETA, e.g.

    step 120/500  loss 6.210  mlm_accuracy 0.100  lr 9.6e-05  1850 tok/s  12.3 steps/s
    elapsed 0:42  ETA 2:13                       (one line)

and the same numbers as TensorBoard scalars under <model_dir>/train. At each
checkpoint the training time and the last window's metrics are recorded beside
the events (train/progress.json), so a resumed run continues the clock and a
finished one still knows its numbers.

Throughput and training time count the time spent in the step function only,
and not its first call in a process, which traces it (and with XLA compiles it):
the loop makes that call one step long, and it is left out. The ETA divides the
wall-clock time since that call (evaluations and checkpoints included) by the
steps done since.
"""
import json
import os
import time
from typing import NamedTuple

import tensorflow as tf

from absl import logging

from kerasllm.atomic_files import write_atomically
from kerasllm.training.step import FIRST_NONFINITE, TOKENS

PROGRESS_FILE = os.path.join("train", "progress.json")


class Throughput(NamedTuple):
    tokens_per_second: float
    steps_per_second: float
    with_tracing: bool  # measured on the tracing call alone: nothing else timed yet


def read_progress(directory, step):
    """(training seconds, metrics) recorded in `directory` at the newest checkpoint
    at or before `step`; (0.0, {}) without one."""
    path = os.path.join(directory, PROGRESS_FILE)
    if not os.path.exists(path):
        return 0.0, {}
    with open(path, encoding="utf-8") as f:
        records = {int(saved): record for saved, record in json.load(f).items()}
    earlier = [saved for saved in records if saved <= step]
    if not earlier:
        return 0.0, {}
    record = records[max(earlier)]
    return record["train_seconds"], record["metrics"]


def format_duration(seconds):
    """`1:02:03`, or `2:03` under an hour."""
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def format_progress(step, total, metrics, learning_rate, throughput, elapsed, eta=None):
    """One progress line (see the module docstring); `eta` None leaves the ETA out, and
    a throughput measured with tracing says so."""
    ordered = sorted(metrics.items(), key=lambda item: (item[0] != "loss", item[0]))
    shown = "  ".join(f"{k} {v:.3f}" for k, v in ordered)
    speed = (f"{throughput.tokens_per_second:.0f} tok/s  "
             f"{throughput.steps_per_second:.3g} steps/s")
    if throughput.with_tracing:
        speed += " (with tracing)"
    line = (f"step {step}/{total}  {shown}  lr {learning_rate:.1e}  {speed}  "
            f"elapsed {format_duration(elapsed)}")
    return line if eta is None else f"{line}  ETA {format_duration(eta)}"


class ProgressLog:
    """Averages the metrics over each window of steps between progress lines and
    reports them (a line, TensorBoard scalars, both in `directory`); keeps the
    training time, counting on from `recorded` (read_progress at the step resumed
    from)."""

    def __init__(self, directory, recorded, total_steps, optimizer):
        self.directory, self.total_steps, self.optimizer = directory, total_steps, optimizer
        self.writer = tf.summary.create_file_writer(os.path.join(directory, "train"))
        self.train_seconds, self.metrics = recorded
        self.throughput = Throughput(0.0, 0.0, False)
        self._started = time.perf_counter()
        self._steady = None  # (time, step) when the tracing call returned
        self._traced = None  # (tokens, steps, seconds) of the tracing call
        self._start_window()

    def _start_window(self):
        self._sums, self._steps = {}, 0
        self._tokens = self._timed_steps = self._seconds = 0.0

    def add(self, outputs, num_steps, seconds, step):
        """Adds what the step function returned ({name: scalar}) for `num_steps` steps
        that took `seconds` and reached `step`."""
        tokens = float(outputs[TOKENS])
        for k, v in outputs.items():
            if k not in (TOKENS, FIRST_NONFINITE):
                self._sums[k] = self._sums.get(k, 0.0) + float(v) * num_steps
        self._steps += num_steps
        if self._steady is None:
            self._steady, self._traced = (time.perf_counter(), step), (tokens, num_steps,
                                                                       seconds)
            return
        self._tokens += tokens
        self._timed_steps += num_steps
        self._seconds += seconds
        self.train_seconds += seconds

    def report(self, step):
        """The progress line and scalars of the window ending at `step`."""
        tokens, steps, seconds = ((self._tokens, self._timed_steps, self._seconds)
                                  if self._timed_steps else self._traced)
        seconds = max(seconds, 1e-9)
        self.throughput = Throughput(tokens / seconds, steps / seconds,
                                     not self._timed_steps)
        self.metrics = {k: v / self._steps for k, v in self._sums.items()}
        now = time.perf_counter()
        steady_time, steady_step = self._steady
        eta = (None if step == steady_step else
               (now - steady_time) / (step - steady_step) * (self.total_steps - step))
        learning_rate = float(self.optimizer.learning_rate)
        logging.info("%s", format_progress(step, self.total_steps, self.metrics, learning_rate,
                                           self.throughput, now - self._started, eta))
        with self.writer.as_default(step=step):
            for k, v in self.metrics.items():
                tf.summary.scalar(k, v)
            tf.summary.scalar("learning_rate", learning_rate)
            tf.summary.scalar("tokens_per_second", self.throughput.tokens_per_second)
            tf.summary.scalar("steps_per_second", self.throughput.steps_per_second)
        self.writer.flush()
        self._start_window()

    def record(self, step):
        """Records the training time and metrics at a checkpoint's `step`."""
        path = os.path.join(self.directory, PROGRESS_FILE)
        records = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                records = json.load(f)
        records[str(step)] = {"train_seconds": self.train_seconds, "metrics": self.metrics}
        write_atomically(path, json.dumps(records, indent=1, sort_keys=True))
