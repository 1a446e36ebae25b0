"""Running `python -m trainers.<trainer>` in tests, and reading back what it trained."""
import subprocess
import sys

import tensorflow as tf

from kerasllm.training.config import TrainConfig
from kerasllm.training.optimizer import create_optimizer
from tests.fresh_process import ROOT


def trainer_runner(trainer):
    """(run_trainer, assert_one_line_error) for `python -m trainers.<trainer>`:
    run_trainer(*args, timeout=600) -> (exit code, stdout + stderr);
    assert_one_line_error(code, output, *fragments) checks that the run failed
    with one `<trainer>: error:` line holding every fragment, and no stack trace."""
    def run_trainer(*args, timeout=600):
        result = subprocess.run([sys.executable, "-m", f"trainers.{trainer}", *args],
                                cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        return result.returncode, result.stdout + result.stderr

    def assert_one_line_error(code, output, *fragments):
        assert code != 0
        assert "Traceback" not in output, output[-3000:]
        errors = [line for line in output.splitlines()
                  if line.startswith(f"{trainer}: error:")]
        assert len(errors) == 1, output[-3000:]
        for fragment in fragments:
            assert fragment in errors[0], errors[0]

    return run_trainer, assert_one_line_error


def restore_trained(model, model_dir):
    """`model` (built) with the weights of the newest checkpoint train() wrote to model_dir."""
    # Restored as train() saved it: the encoder blocks' variables are reached
    # through the optimizer's variable list, not through the task.
    optimizer = create_optimizer(TrainConfig(model_dir, train_steps=3, global_batch_size=8))
    optimizer.build(model.trainable_variables)
    tf.train.Checkpoint(task=model, optimizer=optimizer).restore(
        tf.train.latest_checkpoint(model_dir)).assert_existing_objects_matched().expect_partial()
    return model
