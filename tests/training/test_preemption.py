"""SIGTERM, sent to a real training process, saves a checkpoint before it exits, and
the same command then resumes from it."""
import os
import re
import signal
import subprocess
import sys

import tensorflow as tf

from tests.fresh_process import ROOT


def start(model_dir, steps):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.training.preemption_run", str(model_dir), str(steps)],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)


def test_sigterm_saves_a_checkpoint_and_a_rerun_resumes(tmp_path):
    process = start(tmp_path, 100_000)
    for line in process.stdout:  # wait until training is under way
        if line.startswith("step 3"):
            break
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 3, err[-3000:]
    stopped = int(re.search(r"stopped by SIGTERM at step (\d+) after saving (\S+);", out)[1])
    assert stopped >= 3
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith(f"ckpt-{stopped}")

    rerun = start(tmp_path, stopped + 2)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    assert out.split()[:2] == ["step", str(stopped + 1)]  # resumed, not restarted
    assert f"finished at {stopped + 2}" in out
