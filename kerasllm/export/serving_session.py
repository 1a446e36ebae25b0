"""A SavedModel loaded as TensorFlow Serving loads it: the `serve` MetaGraph in a TF1
session of its own graph, SignatureDefs run by feeding their input tensors and
fetching their output tensors, XLA compilation disabled process-wide.

Shared by the export check (kerasllm.export.check) and the development server
(kerasllm.serving.dev_server), so both run a model exactly as the other does.
"""
import ctypes
import os
import threading

import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graphs use)

from kerasllm.export.errors import ExportError


def _libtensorflow():
    library = ctypes.CDLL(os.path.join(os.path.dirname(tf.__file__),
                                       "libtensorflow_cc.so.2"))
    library._ZN10tensorflow20FailOnXlaCompilationEv.restype = ctypes.c_bool
    return library


def disable_xla_compilation():
    """What tensorflow_model_server does at start-up: any function that must be
    XLA-compiled then fails to run ("XLA compilation disabled") instead of being
    compiled."""
    _libtensorflow()._ZN10tensorflow21DisableXlaCompilationEv()


def xla_compilation_disabled():
    """Whether disable_xla_compilation is in force in this process."""
    return _libtensorflow()._ZN10tensorflow20FailOnXlaCompilationEv()


def enable_xla_compilation():
    """Undoes disable_xla_compilation (for a server run inside a test process)."""
    _libtensorflow()._ZN10tensorflow20EnableXlaCompilationEv()


class XlaDisabled:
    """A context in which XLA compilation is disabled; nested or overlapping uses
    (several servers in one process) re-enable it when the last one ends, and only
    if it was enabled before the first began."""

    _lock = threading.Lock()
    _users = 0
    _was_disabled = False

    def __enter__(self):
        with XlaDisabled._lock:
            if XlaDisabled._users == 0:
                XlaDisabled._was_disabled = xla_compilation_disabled()
                disable_xla_compilation()
            XlaDisabled._users += 1
        return self

    def __exit__(self, *exc_info):
        with XlaDisabled._lock:
            XlaDisabled._users -= 1
            if XlaDisabled._users == 0 and not XlaDisabled._was_disabled:
                enable_xla_compilation()


def load_serving_session(path):
    """(session, meta_graph): the `serve` MetaGraph of the SavedModel at `path` in a new
    tf.compat.v1.Session on a graph of its own; the caller closes the session."""
    session = tf.compat.v1.Session(graph=tf.Graph())
    try:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    except BaseException:
        session.close()
        raise
    return session, meta_graph


def run_signature(session, signature, inputs, outputs=None):
    """{output key: np.ndarray} of a SignatureDef run in `session`, feeding `inputs`
    ({input key: values}) to its input tensors; `outputs` (keys) limits the fetches.
    Raises tf.errors.OpError as the session does."""
    keys = signature.outputs if outputs is None else outputs
    return session.run({key: signature.outputs[key].name for key in keys},
                       feed_dict={signature.inputs[key].name: value
                                  for key, value in inputs.items()})


def replay_warmup_requests(session, meta_graph, requests):
    """Runs every warmup request (see kerasllm.export.warmup) as TF Serving replays
    them before a version takes traffic: the signature and input names each logs
    must be the model's. Raises ExportError naming the request that failed."""
    for index, (name, inputs) in enumerate(requests):
        signature = meta_graph.signature_def.get(name)
        if signature is None or set(inputs) != set(signature.inputs):
            raise ExportError(f"warmup request {index} names signature {name!r} with inputs "
                              f"{sorted(inputs)}, which the model does not have")
        try:
            run_signature(session, signature, inputs)
        except tf.errors.OpError as error:
            raise ExportError(f"warmup request {index} ({name}) failed: {error.message}") \
                from None
