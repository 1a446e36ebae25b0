"""Runs an exported SavedModel's signatures in a fresh process, as TF Serving would."""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def serve_in_fresh_process(path, inputs, output_dir):
    """{"<signature>/<output>": np.ndarray}: `python -m kerasllm.export.check` run on
    the SavedModel at `path` with `inputs` ({input name: list}) in a new process
    (strings come back as bytes); the outputs file is written to `output_dir`."""
    outputs_file = os.path.join(output_dir, "outputs.npz")
    result = subprocess.run(
        [sys.executable, "-m", "kerasllm.export.check", str(path),
         f"--inputs_json={json.dumps(inputs)}", f"--outputs_file={outputs_file}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(np.load(outputs_file))
