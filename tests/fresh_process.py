"""Runs an exported SavedModel's signatures in a fresh process, as TF Serving would."""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def check_in_fresh_process(path, *args):
    """`python -m kerasllm.export.check path args` in a new process (TF1 session, XLA
    compilation disabled, every signature run); the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "kerasllm.export.check", str(path), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def serve_in_fresh_process(path, inputs, output_dir):
    """{"<signature>/<output>": np.ndarray}: the check run on the SavedModel at `path`
    with `inputs` ({input name: list}) in a new process (strings come back as
    bytes); the outputs file is written to `output_dir`."""
    outputs_file = os.path.join(output_dir, "outputs.npz")
    result = check_in_fresh_process(path, f"--inputs_json={json.dumps(inputs)}",
                                    f"--outputs_file={outputs_file}")
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(outputs_file))
