"""Warmup requests: what TF Serving runs against a new model version before it takes
traffic, so that no user request pays for the first run of a signature.

TF Serving reads `assets.extra/tf_serving_warmup_requests`, a TFRecord file of
`PredictionLog` protos (at most 1000), and replays each `PredictRequest` on the
signature it names. An export logs a request for every signature at every batch
size and at a short, a medium and a long input, from the signature's own sample
inputs.
"""
import itertools
import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from kerasllm.export.errors import ExportError
from kerasllm.serving.batching import Batching

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# TF Serving reads no more than this many records.
MAX_REQUESTS = 1000
# The batch sizes the server forms (it pads each batch up to one of them).
BATCH_SIZES = Batching().allowed_batch_sizes
# A text of each length the model meets: a few words, a sentence, one past any
# sequence length (it is truncated inside the graph).
SAMPLE_TEXTS = ("hello", "To be, or not to be, that is the question.", "word " * 600)


def sample_inputs(signature):
    """{input name: values} to warm `signature` (a tf.function with an input
    signature): for string inputs a text of each length; other inputs must be
    given by the caller (see export_saved_model's `warmup_inputs`)."""
    inputs = {}
    for spec in signature.input_signature:
        if spec.dtype != tf.string:
            raise ExportError(f"no sample values for the {spec.dtype.name} input "
                              f"{spec.name!r}: pass them in warmup_inputs")
        inputs[spec.name] = list(SAMPLE_TEXTS)
    return inputs


def predict_logs(model_name, signature_inputs, batch_sizes=BATCH_SIZES):
    """PredictionLogs: for each {signature: {input: values}}, each batch size and
    each sample row (the values of one index across inputs), a request of that
    many copies of the row."""
    logs = []
    for signature, inputs in sorted(signature_inputs.items()):
        rows = len(next(iter(inputs.values())))
        for batch_size, row in itertools.product(batch_sizes, range(rows)):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for name, values in inputs.items():
                batch = np.asarray([values[row]] * batch_size)
                request.inputs[name].CopyFrom(tf.make_tensor_proto(batch))
            logs.append(prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)))
    if len(logs) > MAX_REQUESTS:
        raise ExportError(f"{len(logs)} warmup requests; TF Serving reads at most "
                          f"{MAX_REQUESTS}")
    return logs


def write_warmup_requests(saved_model_dir, logs):
    """Writes `logs` to the SavedModel's assets.extra/tf_serving_warmup_requests."""
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())


def read_warmup_requests(saved_model_dir):
    """[(signature name, {input name: np.ndarray})] of the SavedModel's warmup file,
    [] when it has none."""
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    if not os.path.exists(path):
        return []
    requests = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        requests.append((request.model_spec.signature_name,
                         {name: tf.make_ndarray(proto) for name, proto in
                          request.inputs.items()}))
    return requests
