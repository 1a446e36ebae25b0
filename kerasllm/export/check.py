"""Loads a SavedModel the way TensorFlow Serving does and runs every signature.

    python -m kerasllm.export.check saved_models/bert_tiny/1

TF Serving loads the `serve` MetaGraph into a TF1 session and runs SignatureDefs,
with XLA compilation disabled unless the server is started with
--xla_cpu_compilation_enabled. This checker does the same in a fresh process, so a
model that passes here is one the server can run: it fails on ops outside core
TensorFlow and tensorflow-text, on any Xla* op or `_XlaMustCompile` function
(an exported `jit_compile=True`), and on Python ops, which cannot be serialised.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text  # noqa: E402,F401  (registers the tokenizer ops)
from absl import app, flags  # noqa: E402
from tensorflow.python.framework import op_def_registry  # noqa: E402

from kerasllm.export.errors import ExportError  # noqa: E402
from kerasllm.export.serving_session import (  # noqa: E402
    disable_xla_compilation, load_serving_session, replay_warmup_requests, run_signature)
from kerasllm.export.warmup import read_warmup_requests  # noqa: E402

PYTHON_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}

# Inputs that exercise the edge cases a server sees: a mask to fill, an empty
# string, text far longer than any position table, and non-ASCII punctuation.
SAMPLE_TEXTS = [
    "to be, or not to be, that is the [MASK].",
    "",
    "word " * 2000,
    "Ünïcödé text — with “quotes”, accents and 123 numbers!",
]


def op_report(meta_graph):
    """(sorted op types, problems) for a MetaGraphDef and its function library."""
    graph = meta_graph.graph_def
    function_names = {f.signature.name for f in graph.library.function}
    nodes = list(graph.node)
    problems = []
    for function in graph.library.function:
        nodes.extend(function.node_def)
        if "_XlaMustCompile" in function.attr and function.attr["_XlaMustCompile"].b:
            problems.append(f"function {function.signature.name} is marked _XlaMustCompile "
                            "(exported with jit_compile=True)")
    op_types = set()
    for node in nodes:
        if node.op in function_names:
            continue
        op_types.add(node.op)
        if node.attr.get("_XlaMustCompile") and node.attr["_XlaMustCompile"].b:
            problems.append(f"node {node.name} ({node.op}) is marked _XlaMustCompile")
    for op in sorted(op_types):
        if op.startswith("Xla") or op.startswith("_Xla"):
            problems.append(f"op {op} needs XLA, which TF Serving disables by default")
        elif op in PYTHON_OPS:
            problems.append(f"op {op} calls Python, which a server does not have")
        elif op_def_registry.get(op) is None:
            problems.append(f"op {op} is neither core TensorFlow nor tensorflow-text")
    return sorted(op_types), sorted(set(problems))


def sample_feed(signature, inputs=None, warmup_inputs=None):
    """{input name: values} for every input of a SignatureDef: `inputs[name]` when
    given, else SAMPLE_TEXTS (cycled to the batch size of the given inputs) for
    strings, else the values of the signature's first warmup request
    (`warmup_inputs`)."""
    inputs = inputs or {}
    batch_size = len(next(iter(inputs.values()))) if inputs else len(SAMPLE_TEXTS)
    feed = {}
    for name, info in signature.inputs.items():
        if name in inputs:
            values = inputs[name]
        elif info.dtype == tf.string.as_datatype_enum:
            values = [SAMPLE_TEXTS[i % len(SAMPLE_TEXTS)] for i in range(batch_size)]
        elif warmup_inputs and name in warmup_inputs:
            return dict(warmup_inputs)
        else:
            raise ExportError(f"input {name!r} is not a string; pass it with --inputs_json")
        feed[name] = np.asarray(values)
    return feed


def check_saved_model(path, inputs=None, verbose=True):
    """Runs the checks; returns {signature: {output: np.ndarray}}. Raises ExportError."""
    if not tf.saved_model.contains_saved_model(path):
        raise ExportError(f"no SavedModel at {path}")
    results = {}
    warmup_requests = read_warmup_requests(path)  # read eagerly, before the TF1 graph
    session, meta_graph = load_serving_session(path)
    with session:
        op_types, problems = op_report(meta_graph)
        if verbose:
            print(f"{len(op_types)} op types: {', '.join(op_types)}")
        if problems:
            raise ExportError(f"{path} cannot run in TF Serving:\n  " + "\n  ".join(problems))
        if "serving_default" not in meta_graph.signature_def:
            raise ExportError(f"{path} has no serving_default signature")
        for name, signature in sorted(meta_graph.signature_def.items()):
            if name.startswith("__"):  # e.g. __saved_model_init_op
                continue
            try:
                warmup = next((request for signature_name, request in warmup_requests
                               if signature_name == name), None)
                outputs = run_signature(session, signature,
                                        sample_feed(signature, inputs, warmup))
            except tf.errors.OpError as error:
                raise ExportError(f"signature {name} failed to run: {error.message}") from None
            results[name] = outputs
            if verbose:
                shapes = ", ".join(f"{k} {list(np.shape(v))}" for k, v in sorted(outputs.items()))
                print(f"signature {name}: ok ({shapes})")
        replay_warmup_requests(session, meta_graph, warmup_requests)
        if verbose and warmup_requests:
            print(f"warmup requests: {len(warmup_requests)} replayed")
    return results


FLAGS = flags.FLAGS
flags.DEFINE_string("inputs_json", None,
                    "JSON object {input_name: [values]} to feed instead of the sample texts.")
flags.DEFINE_string("outputs_file", None,
                    "Write every output as <signature>/<output> arrays to this .npz file.")


def main(argv):
    if len(argv) != 2:
        raise app.UsageError("usage: python -m kerasllm.export.check SAVED_MODEL_DIR")
    disable_xla_compilation()
    inputs = json.loads(FLAGS.inputs_json) if FLAGS.inputs_json else None
    try:
        results = check_saved_model(argv[1], inputs)
    except ExportError as error:
        print(f"FAILED: {error}", file=sys.stderr)
        return 1
    if FLAGS.outputs_file:
        # Strings as fixed-width bytes, so the file loads without allow_pickle.
        np.savez(FLAGS.outputs_file, **{
            f"{sig}/{out}": value.astype(bytes) if value.dtype == object else value
            for sig, outputs in results.items() for out, value in outputs.items()})
    print(f"PASSED: {argv[1]} runs as TF Serving would run it")
    return 0


if __name__ == "__main__":
    app.run(main)
