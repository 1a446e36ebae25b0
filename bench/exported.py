"""Times one signature of an exported SavedModel as TF Serving runs it: in a fresh
process, loaded into a TF1 session with XLA compilation disabled, one untimed run
(set-up), then timed runs of the same request.

    seconds, outputs = time_signature(path, "generate", {"prompt": prompts}, rounds=3)

The fresh process is `python -m bench.exported '<JSON request>'`, which loads the
model as the export check does (kerasllm.export.serving_session); it prints one JSON
line, {"seconds": [one per round], "outputs": {name: the last run's output}} (its
outputs of one value, or one row of numbers, per request row). `profile_signature`
traces one run instead and sums the time of each op type.
"""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _fresh_process(request):
    result = subprocess.run([sys.executable, "-m", "bench.exported", json.dumps(request)],
                            cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"running {request['signature']} of {request['path']} failed:\n"
                           f"{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def time_signature(path, signature, inputs, rounds):
    """(seconds of each of `rounds` runs, {output name: the last run's output as a
    list, strings decoded} for the outputs of shape [N] and numeric [N, K]):
    `signature` of the SavedModel at `path` run on `inputs` ({input name: list}) in a
    fresh process; RuntimeError with the end of its stderr if that process fails."""
    timings = _fresh_process({"path": path, "signature": signature, "inputs": inputs,
                              "rounds": rounds})
    return timings["seconds"], timings["outputs"]


def profile_signature(path, signature, inputs, top=10):
    """[[op type, share of the summed op time]] of the `top` op types of one traced run
    (after an untraced one) of `signature`, every node execution counted (a while
    loop's body once per iteration); in a fresh process as time_signature."""
    return _fresh_process({"path": path, "signature": signature, "inputs": inputs,
                           "rounds": 0, "profile": top})["profile"]


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
        if request.get("profile"):
            return {"profile": _op_time_shares(session, signature, feed, request["profile"])}
        seconds = []
        for _ in range(request["rounds"]):
            start = time.perf_counter()
            outputs = run_signature(session, signature, feed)
            seconds.append(time.perf_counter() - start)
    decoded = {name: [v.decode("utf-8", "replace") if isinstance(v, bytes) else v
                      for v in np.asarray(value).tolist()]
               for name, value in outputs.items() if np.ndim(value) == 1}
    decoded.update({name: np.asarray(value).tolist() for name, value in outputs.items()
                    if np.ndim(value) == 2 and np.asarray(value).dtype.kind in "iuf"})
    return {"seconds": seconds, "outputs": decoded}


def _op_time_shares(session, signature, feed, top):
    import collections

    import tensorflow as tf
    options = tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
    metadata = tf.compat.v1.RunMetadata()
    session.run({key: info.name for key, info in signature.outputs.items()},
                {signature.inputs[key].name: value for key, value in feed.items()},
                options=options, run_metadata=metadata)
    op_types = {node.name: node.type for node in session.graph.get_operations()}
    for function in session.graph.as_graph_def().library.function:
        op_types.update((node.name, node.op) for node in function.node_def)
    micros = collections.Counter()
    for device in metadata.step_stats.dev_stats:
        for node in device.node_stats:
            name = node.node_name.split(":")[0]
            micros[op_types.get(name, node.timeline_label.split(" = ")[-1].split("(")[0]
                                or name)] += node.op_end_rel_micros - node.op_start_rel_micros
    total = sum(micros.values()) or 1
    return [[op, micros[op] / total] for op, _ in micros.most_common(top)]


if __name__ == "__main__":
    print(json.dumps(_run(json.loads(sys.argv[1]))))
