"""Times one signature of an exported SavedModel as TF Serving runs it: in a fresh
process, loaded into a TF1 session with XLA compilation disabled, one untimed run
(set-up), then timed runs of the same request.

    seconds, outputs = time_signature(path, "generate", {"prompt": prompts}, rounds=3)

The fresh process is `python -m bench.exported '<JSON request>'`, which loads the
model as the export check does (kerasllm.export.serving_session); it prints one JSON
line, {"seconds": [one per round], "outputs": {name: the last run's output}} (its
outputs of one value per request row).
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def time_signature(path, signature, inputs, rounds):
    """(seconds of each of `rounds` runs, {output name: the last run's output as a
    list, strings decoded} for the outputs of shape [N]): `signature` of the
    SavedModel at `path` run on `inputs` ({input name: list}) in a fresh process;
    RuntimeError with the end of its stderr if that process fails."""
    request = {"path": path, "signature": signature, "inputs": inputs, "rounds": rounds}
    result = subprocess.run([sys.executable, "-m", "bench.exported", json.dumps(request)],
                            cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"timing {signature} of {path} failed:\n{result.stderr[-3000:]}")
    timings = json.loads(result.stdout.strip().splitlines()[-1])
    return timings["seconds"], timings["outputs"]


def _run(request):
    import numpy as np

    # The export check's own loading (registers tensorflow-text's ops too).
    from kerasllm.export.serving_session import (disable_xla_compilation,
                                                 load_serving_session, run_signature)
    disable_xla_compilation()
    session, meta_graph = load_serving_session(request["path"])
    with session:
        signature = meta_graph.signature_def[request["signature"]]
        # Strings as numpy objects (bytes), as a request's tensors arrive.
        feed = {name: np.array(value, dtype=object if isinstance(value[0], str) else None)
                for name, value in request["inputs"].items()}
        run_signature(session, signature, feed)  # the first run sets things up
        seconds = []
        for _ in range(request["rounds"]):
            start = time.perf_counter()
            outputs = run_signature(session, signature, feed)
            seconds.append(time.perf_counter() - start)
    decoded = {name: [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                      for v in np.asarray(value).tolist()]
               for name, value in outputs.items() if np.ndim(value) == 1}
    return {"seconds": seconds, "outputs": decoded}


if __name__ == "__main__":
    print(json.dumps(_run(json.loads(sys.argv[1]))))
