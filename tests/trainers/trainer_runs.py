"""Running the trainers in tests: in this process (their `run`, with the flags defined
on a fresh FlagValues, as `trainers.common.main` defines them on absl's), or once per
trainer as `python -m trainers.<name>` for what only a fresh process shows."""
import contextlib
import importlib
import io
import json
import logging
import os
import subprocess
import sys

import tensorflow as tf
from absl import flags
from absl import logging as absl_logging

from kerasllm.errors import KerasLLMError
from kerasllm.evaluation.best_weights import WeightStore
from kerasllm.export.saved_model import METADATA_FILE
from kerasllm.training.config import TrainConfig
from kerasllm.training.optimizer import create_optimizer
from tests.fresh_process import ROOT


class Trainer:
    """One trainer, `trainers.<name>`."""

    def __init__(self, name):
        self.name = name
        self.module = importlib.import_module(f"trainers.{name}")

    def parse(self, *args):
        """A FlagValues holding this trainer's flags parsed from `args`."""
        flag_values = flags.FlagValues()
        self.module.define_flags(flag_values)
        flag_values([self.name, *args])
        return flag_values

    def run(self, *args):
        """Runs the trainer in this process; returns what it printed and logged."""
        output = io.StringIO()
        handler = logging.StreamHandler(output)
        logger = absl_logging.get_absl_logger()
        verbosity = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.INFO)
        logger.addHandler(handler)
        try:
            with contextlib.redirect_stdout(output):
                self.module.run(self.parse(*args))
        finally:
            logger.removeHandler(handler)
            absl_logging.set_verbosity(verbosity)
        return output.getvalue()

    def error(self, *args):
        """The message of the error the trainer stops with on `args` (a kerasllm
        error, which `main` prints as one line, or a bad flag)."""
        try:
            self.run(*args)
        except (KerasLLMError, flags.Error) as error:
            return str(error)
        raise AssertionError(f"{self.name} {' '.join(args)} did not fail")

    def run_fresh(self, *args, timeout=600):
        """`python -m trainers.<name> args` -> (exit code, stdout + stderr), in the
        environment a user has (no TF_CPP_MIN_LOG_LEVEL of the tests')."""
        environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        result = subprocess.run([sys.executable, "-m", f"trainers.{self.name}", *args],
                                cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                                env=environment)
        return result.returncode, result.stdout + result.stderr

    def assert_one_line_error(self, code, output, *fragments):
        """The fresh run failed with one `<trainer>: error:` line holding every
        fragment, and no stack trace."""
        assert code != 0
        assert "Traceback" not in output, output[-3000:]
        errors = [line for line in output.splitlines()
                  if line.startswith(f"{self.name}: error:")]
        assert len(errors) == 1, output[-3000:]
        for fragment in fragments:
            assert fragment in errors[0], errors[0]


def restore_trained(model, model_dir):
    """`model` (built) with the weights of the newest checkpoint train() wrote to model_dir."""
    # Restored as train() saved it: the encoder blocks' variables are reached
    # through the optimizer's variable list, not through the task.
    optimizer = create_optimizer(TrainConfig(model_dir, train_steps=3, global_batch_size=8))
    optimizer.build(model.trainable_variables)
    tf.train.Checkpoint(task=model, optimizer=optimizer).restore(
        tf.train.latest_checkpoint(model_dir)).assert_existing_objects_matched().expect_partial()
    return model


def export_metadata(export_path):
    with open(os.path.join(export_path, METADATA_FILE)) as f:
        return json.load(f)


def restore_exported(model, model_dir, export_path):
    """`model` (built) with the weights the export holds: those of its metadata's
    exported_step, kept in model_dir/best by the trainer's validation."""
    WeightStore(os.path.join(model_dir, "best")).read(
        export_metadata(export_path)["exported_step"], model)
    return model
