"""Helpers of the kill-and-resume tests: training processes that a test kills with
SIGKILL at a step of its choosing, and what they leave behind (checkpoints, the
record of the examples each step saw)."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from tests.fresh_process import ROOT
from tests.ports import free_ports


class Process:
    """A training process whose stdout and stderr go to files in `directory`, so a
    test can wait for a line without a pipe to drain."""

    def __init__(self, args, directory, name, env=None):
        self.name = name
        self.out_path = os.path.join(directory, f"{name}.out")
        self.err_path = os.path.join(directory, f"{name}.err")
        environment = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.popen = subprocess.Popen(args, cwd=ROOT, env=environment, stdout=out,
                                          stderr=err)

    @property
    def stdout(self):
        with open(self.out_path) as f:
            return f.read()

    @property
    def stderr(self):
        with open(self.err_path) as f:
            return f.read()

    def tail(self, chars=3000):
        return f"[{self.name} stdout]\n{self.stdout[-chars:]}\n[{self.name} stderr]\n" \
               f"{self.stderr[-chars:]}"

    def wait_for(self, pattern, timeout=120, stream="stdout"):
        """Waits until a line of `stream` matches `pattern`; the match."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, getattr(self, stream), re.MULTILINE)
            if match:
                return match
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.name} ended ({self.popen.returncode}) before "
                                     f"printing {pattern!r}\n{self.tail()}")
            time.sleep(0.02)
        raise AssertionError(f"{self.name} printed no {pattern!r} in {timeout} s\n"
                             f"{self.tail()}")

    def kill(self):
        """SIGKILL: no handler runs, nothing is flushed or saved."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def finish(self, timeout=300):
        """Waits for the process to end; its exit code."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.name} still ran after {timeout} s\n{self.tail()}")

    def finish_ok(self, timeout=300):
        code = self.finish(timeout)
        assert code == 0, self.tail()
        return self


def toy_run(directory, name, model_dir, steps, sleep=0.0, strategy="one_device",
            tf_config=None):
    """`python -m tests.training.kill_resume_run` (see there), recording into
    `directory/<name>.record`."""
    env = {"TF_CPP_MIN_LOG_LEVEL": "2"}
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return Process([sys.executable, "-m", "tests.training.kill_resume_run", str(model_dir),
                    os.path.join(directory, f"{name}.record"), strategy, str(steps),
                    str(sleep)], directory, name, env)


def record(directory, name):
    """[(batch number, (example ids))] in the order the process trained on them;
    a line cut short by SIGKILL is left out."""
    path = os.path.join(directory, f"{name}.record")
    if not os.path.exists(path):
        return []
    batches = []
    with open(path) as f:
        for line in f:
            match = re.fullmatch(r"(\d+) \[([\d ]+)\]\n", line)
            if match:
                batches.append((int(match[1]), tuple(int(i) for i in match[2].split())))
    return batches


def step_losses(output):
    """{step: exact loss text} of the `step N loss L` lines."""
    return {int(m[1]): m[2] for m in re.finditer(r"^step (\d+) loss (\S+)$", output,
                                                 re.MULTILINE)}


def checkpoint_values(path):
    """{variable: value} of every variable in the checkpoint at `path` (the task's
    weights, the optimizer's moments and iterations, the step, the RNG states)."""
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name != "_CHECKPOINTABLE_OBJECT_GRAPH" and not name.startswith("save_counter")}


def assert_same_checkpoint(path, reference):
    got, want = checkpoint_values(path), checkpoint_values(reference)
    assert sorted(got) == sorted(want)
    different = [name for name in want if not np.array_equal(got[name], want[name])]
    assert not different, f"{path} differs from {reference} in {different}"


def clusters(count, workers=2):
    """`count` TF_CONFIG clusters of `workers` worker tasks each, on distinct free
    local ports."""
    ports = free_ports(count * workers)
    return [{"worker": [f"127.0.0.1:{port}" for port in ports[i * workers:(i + 1) * workers]]}
            for i in range(count)]


def tf_config(cluster, index):
    return {"cluster": cluster, "task": {"type": "worker", "index": index}}
