"""Stand-ins for tensorflow_model_server in tests (its binary cannot be installed here):
a gRPC PredictionService and an HTTP server speaking TF Serving's REST predict format,
both on 127.0.0.1, both running real SavedModels loaded with TensorFlow.

Each can be told to answer UNAVAILABLE a number of times first, or to be slow, so the
client's retries and timeouts meet real network failures.
"""
import base64
import http.server
import json
import re
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                   r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?:predict$")


class ModelStore:
    """The models a stand-in serves: {name: {version: SavedModel dir}}, labels
    {name: {label: version}}; records every request as (name, version, signature)."""

    def __init__(self, models, labels=None):
        self.loaded = {name: {version: tf.saved_model.load(path)
                              for version, path in versions.items()}
                       for name, versions in models.items()}
        self.labels = labels or {}
        self.requests = []
        self.unavailable = 0  # answer UNAVAILABLE this many more times
        self.delay = 0.0  # seconds to wait before answering

    def run(self, name, version, label, signature, inputs):
        """(outputs {name: np.ndarray}, None) or (None, (kind, message)) with kind one of
        "unavailable", "not_found", "invalid"."""
        time.sleep(self.delay)
        if self.unavailable > 0:
            self.unavailable -= 1
            return None, ("unavailable", "the model is loading")
        if name not in self.loaded:
            return None, ("not_found", f"Servable not found for request: Latest({name})")
        versions = self.loaded[name]
        if label is not None:
            if label not in self.labels.get(name, {}):
                return None, ("not_found", f"Unrecognized servable version label: {label}")
            version = self.labels[name][label]
        version = max(versions) if version is None else int(version)
        if version not in versions:
            return None, ("not_found", f"Servable not found for request: "
                                       f"Specific({name}, {version})")
        signatures = versions[version].signatures
        if signature not in signatures:
            return None, ("invalid", f"Serving signature name: \"{signature}\" not found in "
                                     "signature def")
        self.requests.append((name, version, signature))
        function = signatures[signature]
        expected = set(function.structured_input_signature[1])
        if set(inputs) != expected:
            return None, ("invalid", f"inputs {sorted(inputs)} do not match {sorted(expected)}")
        specs = function.structured_input_signature[1]
        # As TF Serving does, JSON numbers take the signature's dtype.
        outputs = function(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()})
        return {k: v.numpy() for k, v in outputs.items()}, None


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    _CODES = {"unavailable": grpc.StatusCode.UNAVAILABLE,
              "not_found": grpc.StatusCode.NOT_FOUND,
              "invalid": grpc.StatusCode.INVALID_ARGUMENT}

    def __init__(self, store):
        self.store = store

    def Predict(self, request, context):  # noqa: N802 (the gRPC method's name)
        spec = request.model_spec
        outputs, error = self.store.run(
            spec.name, spec.version.value if spec.HasField("version") else None,
            spec.version_label or None, spec.signature_name or "serving_default",
            {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        if error:
            context.abort(self._CODES[error[0]], error[1])
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(spec)
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response


def start_grpc_server(store):
    """A started grpc.Server on 127.0.0.1; returns (server, "127.0.0.1:<port>")."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Servicer(store),
                                                                        server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"


def _json_output(value):
    """An output as TF Serving writes it: bytes as UTF-8 text, NumPy as lists."""
    if isinstance(value, np.ndarray):
        return [_json_output(v) for v in value] if value.ndim else _json_output(value.item())
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return value.item() if isinstance(value, np.generic) else value


def _request_value(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    return value.encode("utf-8") if isinstance(value, str) else value


def start_rest_server(store):
    """A started HTTP server on 127.0.0.1 answering POST .../v1/models/...:predict in
    TF Serving's columnar ("inputs" -> "outputs") and row ("instances" ->
    "predictions") formats; returns (server, "http://127.0.0.1:<port>")."""
    statuses = {"unavailable": 503, "not_found": 404, "invalid": 400}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802 (http.server's method name)
            match = _PATH.match(self.path)
            if not match:
                return self.answer(404, {"error": f"Malformed request: POST {self.path}"})
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if "inputs" in body:
                inputs = {k: np.asarray([_request_value(v) for v in values])
                          for k, values in body["inputs"].items()}
            else:
                rows = body["instances"]
                inputs = {k: np.asarray([_request_value(row[k]) for row in rows])
                          for k in rows[0]}
            outputs, error = store.run(match["name"], match["version"], match["label"],
                                       body.get("signature_name", "serving_default"), inputs)
            if error:
                return self.answer(statuses[error[0]], {"error": error[1]})
            if "inputs" in body:
                return self.answer(200, {"outputs": {k: _json_output(v)
                                                     for k, v in outputs.items()}})
            rows = len(next(iter(outputs.values())))
            return self.answer(200, {"predictions": [
                {k: _json_output(v[i]) for k, v in outputs.items()} for i in range(rows)]})

    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # a client that timed out has closed the connection; nothing to report

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
