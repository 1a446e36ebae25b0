"""A development server that answers as TensorFlow Serving does: for laptops and
tests, not for production.

    python -m kerasllm.serving.dev_server --root=saved_models --rest_port=8501 --grpc_port=8500

    with DevServer("saved_models") as server:          # ports 0: free ones
        ServingClient("minilm", rest_url=server.rest_url).embed(["A man plays a guitar."])

It serves every model under the export root (`<root>/<model>/<version>/saved_model.pb`)
with TF Serving's REST API (`/v1/models/<name>[/versions/<v>|/labels/<l>]` :predict,
status and /metadata) and gRPC API (PredictionService.Predict and GetModelMetadata,
ModelService.GetModelStatus, plus the standard grpc.health.v1 service), loading each
export as tensorflow_model_server does: the `serve` MetaGraph in a TF1 session, XLA
compilation disabled, the export's warmup requests replayed before the version
takes traffic (see kerasllm.export.serving_session). Each model serves its newest
version, or the versions and labels that `<root>/models.config` (written by
`python -m trainers.serving_config`) gives it.

What it does not do, and TF Serving does: batch requests, load new versions or a
changed models.config while running (restart it), Classify/Regress/MultiInference,
monitoring, SSL, timeouts. Requests run on a thread each. Serve users with
tensorflow/serving (deploy/).
"""
import base64
import binascii
import http.server
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import tensorflow as tf
from absl import app, flags
from google.protobuf import json_format, text_format
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2, get_model_status_pb2, model_pb2, model_service_pb2_grpc,
    predict_pb2, prediction_service_pb2_grpc)
from tensorflow_serving.config import model_server_config_pb2

from kerasllm.errors import KerasLLMError
from kerasllm.export.errors import ExportError
from kerasllm.export.serving_session import (
    XlaDisabled, load_serving_session, replay_warmup_requests, run_signature)
from kerasllm.export.warmup import read_warmup_requests
from kerasllm.serving.model_config import MODELS_FILE, find_models

DEFAULT_SIGNATURE = "serving_default"
logger = logging.getLogger("kerasllm.serving.dev_server")

# How TF Serving's REST front end answers each status (http_rest_api_util's
# ToHTTPStatusCode).
HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 412, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500, grpc.StatusCode.UNAUTHENTICATED: 401}
# TensorFlow's error codes are gRPC's.
_CODES = {code.value[0]: code for code in grpc.StatusCode}

_PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?"
                           r":(classify|regress|predict)", re.IGNORECASE)
_MODEL_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?"
                         r"(/metadata)?", re.IGNORECASE)


class DevServerError(KerasLLMError, RuntimeError):
    """The development server cannot start: a port in use, a models.config it cannot
    read, or no export that loads."""


class ServingFailure(Exception):
    """A request that TF Serving would fail: a gRPC status code and its message (the
    REST front end answers HTTP_STATUS[code] and {"error": message})."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message


def _invalid(message):
    return ServingFailure(grpc.StatusCode.INVALID_ARGUMENT, message)


class Version:
    """One version of a served model: its session and MetaGraph once loaded, or the
    error that kept it from loading."""

    def __init__(self, number, path):
        self.number, self.path = number, path
        self.session = self.meta_graph = self.error = None

    def load(self, warmup):
        warmup_requests = read_warmup_requests(self.path) if warmup else []
        session, meta_graph = load_serving_session(self.path)
        try:
            replay_warmup_requests(session, meta_graph, warmup_requests)
        except BaseException:
            session.close()
            raise
        self.session, self.meta_graph = session, meta_graph

    @property
    def available(self):
        return self.error is None and self.session is not None


def read_model_config(root):
    """{model name: ModelConfig} from <root>/models.config, or {} without one."""
    path = os.path.join(root, MODELS_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    except (OSError, text_format.ParseError) as error:
        raise DevServerError(f"cannot read {path}: {error}") from None
    return {entry.name: entry for entry in config.model_config_list.config}


def chosen_versions(available, entry):
    """The versions of `available` (ascending) that TF Serving's version policy in a
    ModelConfig `entry` serves; without an entry, the newest."""
    policy = entry.model_version_policy if entry is not None else None
    kind = policy.WhichOneof("policy_choice") if policy is not None else None
    if kind == "specific":
        return sorted(set(policy.specific.versions) & set(available))
    if kind == "all":
        return list(available)
    count = policy.latest.num_versions if kind == "latest" else 0
    return list(available[-max(count, 1):])


# REST values <-> NumPy, as TF Serving's json_tensor does.

def _type_name(dtype_enum):
    """A DataType as TensorFlow's messages name it: float, int32, string."""
    return types_pb2.DataType.Name(dtype_enum)[len("DT_"):].lower()


def _is_b64(value):
    return isinstance(value, dict) and set(value) == {"b64"}


def _map_leaves(value, function):
    if isinstance(value, list):
        return [_map_leaves(item, function) for item in value]
    return function(value)


def _json_bytes(value):
    if isinstance(value, str):
        return value.encode("utf-8")
    if _is_b64(value) and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except binascii.Error:
            raise _invalid(f"Unable to base64 decode {value['b64'][:40]!r}") from None
    raise _invalid(f"JSON Value: {json.dumps(value)[:40]} is not of expected type: string")


def json_to_array(values, tensor_info):
    """The JSON `values` of one input as an np.ndarray of its TensorInfo's dtype:
    strings from JSON strings or {"b64": ...}, numbers converted (ints to float,
    never a fraction to an int)."""
    dtype = tf.dtypes.as_dtype(tensor_info.dtype)
    if dtype == tf.string:
        array = np.array(_map_leaves(values, _json_bytes), dtype=object)
        if not all(isinstance(item, bytes) for item in array.flat):
            raise _invalid("the values of a string input must form a rectangular array")
        return array
    try:
        array = np.asarray(values)
    except ValueError as error:
        raise _invalid(f"the values of a {dtype.name} input must form a rectangular array "
                       f"({error})") from None
    kind = array.dtype.kind
    wanted = "b" if dtype == tf.bool else "iuf" if dtype.is_floating else "iu"
    if kind not in wanted and not (dtype.is_integer and kind == "f"
                                   and np.array_equal(array, np.round(array))):
        raise _invalid(f"JSON Value: {json.dumps(np.ravel(array)[:1].tolist())[:40]} "
                       f"is not of expected type: {_type_name(tensor_info.dtype)}")
    return array.astype(dtype.as_numpy_dtype)


def array_to_json(name, array):
    """An output as TF Serving writes it: strings as text, or {"b64": ...} when the
    output's name ends in _bytes; numbers as JSON numbers."""
    if array.dtype == object or array.dtype.kind == "S":
        if name.endswith("_bytes"):
            return _map_leaves(array.tolist(),
                               lambda b: {"b64": base64.b64encode(b).decode("ascii")})
        return _map_leaves(array.tolist(), lambda b: b.decode("utf-8", "replace"))
    return array.tolist()


def _request_columns(body, signature):
    """{input name: JSON values} of a predict request body in the row ("instances")
    or columnar ("inputs") format; and whether it was the row format."""
    if ("instances" in body) == ("inputs" in body):
        raise _invalid("Missing 'inputs' or 'instances' key" if "inputs" not in body else
                       "Not allowed to mix 'inputs' and 'instances' keys")
    only = next(iter(signature.inputs)) if len(signature.inputs) == 1 else None
    if "inputs" in body:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and not _is_b64(inputs):
            return inputs, False
        if only is None:
            raise _invalid("'inputs' must be a JSON object naming the signature's "
                           f"{len(signature.inputs)} inputs")
        return {only: inputs}, False
    rows = body["instances"]
    if not isinstance(rows, list) or not rows:
        raise _invalid("Expecting 'instances' to be a non-empty list/array")
    if all(isinstance(row, dict) and not _is_b64(row) for row in rows):
        names = set(rows[0])
        for index, row in enumerate(rows):
            if set(row) != names:
                raise _invalid(f"Failed to process element: {index} of 'instances' list: its "
                               f"keys {sorted(row)} are not those of element 0 "
                               f"{sorted(names)}")
        return {name: [row[name] for row in rows] for name in rows[0]}, True
    if only is None:
        raise _invalid(f"the signature has {len(signature.inputs)} inputs: each element of "
                       "'instances' must be a JSON object naming them")
    return {only: rows}, True


def _response_body(outputs, row_format):
    """TF Serving's answer: {"outputs": ...} or {"predictions": [...]}, each output
    bare when the signature has only one."""
    values = {name: array_to_json(name, array) for name, array in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    sizes = {name: (array.shape[0] if array.ndim else None) for name, array in outputs.items()}
    batch = next(iter(sizes.values()), 0)
    for name, size in sizes.items():
        if size is None or size != batch:
            raise _invalid(f"Tensor name: {name} has inconsistent batch size: {size} "
                           f"expecting: {batch}")
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{name: value[i] for name, value in values.items()}
                            for i in range(batch)]}


def _message_json(message):
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True,
                                     preserving_proto_field_name=True)


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up closed its connection; the request was logged


class _RestHandler(http.server.BaseHTTPRequestHandler):
    server_version = "kerasllm-dev-server"

    def log_message(self, *args):
        pass  # DevServer logs one line per request itself

    def do_GET(self):  # noqa: N802 (http.server's method name)
        self._answer("GET")

    def do_POST(self):  # noqa: N802 (http.server's method name)
        self._answer("POST")

    def _answer(self, method):
        started = time.monotonic()
        dev_server = self.server.dev_server
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, answer = 200, dev_server.rest(method, self.path.split("?")[0], body)
        except ServingFailure as failure:
            status, answer = HTTP_STATUS.get(failure.code, 500), {"error": failure.message}
        except Exception as error:  # noqa: BLE001 (an answer, whatever went wrong)
            status, answer = 500, {"error": f"{type(error).__name__}: {error}"}
        data = json.dumps(answer).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client has gone (it timed out)
        dev_server.log_request("REST", f"{method} {self.path}", status, started)


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, dev_server):
        self.dev_server = dev_server

    def Predict(self, request, context):  # noqa: N802 (the gRPC method's name)
        return self.dev_server.grpc_call("Predict", request.model_spec, context,
                                         self.dev_server.grpc_predict, request)

    def GetModelMetadata(self, request, context):  # noqa: N802
        return self.dev_server.grpc_call("GetModelMetadata", request.model_spec, context,
                                         self.dev_server.model_metadata, request.model_spec,
                                         list(request.metadata_field))


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, dev_server):
        self.dev_server = dev_server

    def GetModelStatus(self, request, context):  # noqa: N802
        return self.dev_server.grpc_call("GetModelStatus", request.model_spec, context,
                                         self.dev_server.model_status, request.model_spec)


class DevServer:
    """TF Serving's REST and gRPC APIs over the exports under `root`, in this process.

    Args:
      root: the export root, <root>/<model>/<version>/saved_model.pb.
      rest_port, grpc_port: where to listen; 0 picks a free port (see rest_url and
        grpc_target once started).
      host: the address to listen on.
      labels: {model: {label: version}}, added to (and overriding) the labels of
        <root>/models.config; a labelled version is loaded too.
      warmup: replay each version's warmup requests before serving it, as TF
        Serving does (a version whose warmup fails is not served).

    start() loads every model (XLA compilation stays disabled in this process until
    stop()) and serves; it raises DevServerError or ServingConfigError in one line
    for a root without models, a port in use or nothing that loads. An export that
    fails to load is logged by name and reported by its status; the others serve.
    Usable as a context manager. predict, model_status and model_metadata are what
    both front ends call: a test can override them to inject faults.
    """

    def __init__(self, root, rest_port=0, grpc_port=0, *, host="127.0.0.1", labels=None,
                 warmup=True):
        self.root, self.host, self.warmup = root, host, warmup
        self.rest_port, self.grpc_port = rest_port, grpc_port
        self.extra_labels = labels or {}
        self.models, self.labels = {}, {}  # {name: {number: Version}}, {name: {label: n}}
        self._http = self._grpc = self._health = self._xla = self._serving = None

    @property
    def rest_url(self):
        return f"http://{self.host}:{self.rest_port}"

    @property
    def grpc_target(self):
        return f"{self.host}:{self.grpc_port}"

    def __enter__(self):
        return self.start() if self._http is None else self

    def __exit__(self, *exc_info):
        self.stop()

    # Starting and stopping.

    def start(self):
        plan = self._plan(find_models(self.root), read_model_config(self.root))
        self._listen()
        try:
            self._xla = XlaDisabled().__enter__()
            self._load(plan)
        except BaseException:
            self.stop()
            raise
        self._serving = threading.Thread(target=self._http.serve_forever, daemon=True,
                                         name="dev-server-rest")
        self._serving.start()
        self._grpc.start()
        return self

    def _listen(self):
        """Binds both ports before the slow loading, so a port in use fails at once."""
        try:
            self._http = _HttpServer((self.host, self.rest_port), _RestHandler)
        except OSError as error:
            raise DevServerError(f"cannot listen for REST on {self.host}:{self.rest_port}: "
                                 f"{error.strerror}; pass another --rest_port (0 picks a "
                                 "free one)") from None
        self._http.dev_server = self
        self.rest_port = self._http.server_address[1]
        # No SO_REUSEPORT: a second server on a port in use must fail, not share it.
        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=8,
                                                            thread_name_prefix="dev-server"),
                                 options=[("grpc.so_reuseport", 0)])
        try:
            port = self._grpc.add_insecure_port(f"{self.host}:{self.grpc_port}")
        except RuntimeError:
            port = 0
        if not port:
            self._http.server_close()
            self._http = None
            raise DevServerError(f"cannot listen for gRPC on {self.host}:{self.grpc_port} "
                                 "(in use?); pass another --grpc_port (0 picks a free one)")
        self.grpc_port = port
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionService(self), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self),
                                                                  self._grpc)
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)

    def _plan(self, available, config):
        """{name: sorted versions to load}, setting self.labels; refuses labels for
        models or versions that are not under the root."""
        for name in config:
            if name not in available:
                logger.warning("%s names model %r, which is not under %s; skipped",
                               MODELS_FILE, name, self.root)
        plan = {}
        for name, versions in available.items():
            entry = config.get(name)
            self.labels[name] = dict(entry.version_labels) if entry is not None else {}
            self.labels[name].update(self.extra_labels.get(name, {}))
            missing = sorted(set(self.labels[name].values()) - set(versions))
            if missing:
                raise DevServerError(f"labels of {name!r} name version(s) {missing}, which "
                                     f"are not under {self.root}; versions: {versions}")
            plan[name] = sorted(set(chosen_versions(versions, entry))
                                | set(self.labels[name].values()))
        unknown = sorted(set(self.extra_labels) - set(available))
        if unknown:
            raise DevServerError(f"labels name model(s) {unknown} that are not under "
                                 f"{self.root}; models: {', '.join(available)}")
        return plan

    def _load(self, plan):
        for name, numbers in plan.items():
            self.models[name] = {}
            for number in numbers:
                version = Version(number, os.path.join(self.root, name, str(number)))
                self.models[name][number] = version
                started = time.monotonic()
                try:
                    version.load(self.warmup)
                except (OSError, ExportError, tf.errors.OpError, RuntimeError,
                        ValueError) as error:
                    version.error = (str(getattr(error, "message", error)).strip()
                                     or type(error).__name__)
                    logger.error("cannot load %s version %d (%s): %s; serving the others",
                                 name, number, version.path, version.error.splitlines()[0])
                    continue
                logger.info("loaded %s version %d in %.1f s", name, number,
                            time.monotonic() - started)
        if not any(v.available for versions in self.models.values() for v in versions.values()):
            raise DevServerError(f"no export under {self.root} could be loaded (see the "
                                 "errors above)")
        for service in ("", "tensorflow.serving.PredictionService",
                        "tensorflow.serving.ModelService"):
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def stop(self):
        """Stops serving and closes every session; safe to call more than once."""
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait()
            self._grpc = None
        if self._http is not None:
            if self._serving is not None:  # shutdown() waits for serve_forever to end
                self._http.shutdown()
                self._serving = None
            self._http.server_close()
            self._http = None
        for versions in self.models.values():
            for version in versions.values():
                if version.session is not None:
                    version.session.close()
                    version.session = None
        if self._xla is not None:
            self._xla.__exit__(None, None, None)
            self._xla = None

    def serving_summary(self):
        """One line: each model and the versions it serves."""
        return "; ".join(
            f"{name} " + ", ".join(str(n) + ("" if v.available else " (failed)")
                                   for n, v in sorted(versions.items()))
            for name, versions in self.models.items())

    def log_request(self, front_end, what, status, started):
        logger.info("%s %s %s %.1f ms", front_end, what, status,
                    (time.monotonic() - started) * 1000)

    # What both front ends answer.

    def find_version(self, model_spec):
        """The loaded Version a ModelSpec (name, and version or version_label) names."""
        name = model_spec.name
        if model_spec.version_label:
            if model_spec.version_label not in self.labels.get(name, {}):
                raise _invalid(f"Unrecognized servable version label: "
                               f"{model_spec.version_label}")
            number = self.labels[name][model_spec.version_label]
        elif model_spec.HasField("version"):
            number = model_spec.version.value
        else:
            newest = [n for n, v in self.models.get(name, {}).items() if v.available]
            if not newest:
                raise ServingFailure(grpc.StatusCode.NOT_FOUND,
                                     f"Servable not found for request: Latest({name})")
            number = max(newest)
        version = self.models.get(name, {}).get(number)
        if version is None or not version.available:
            raise ServingFailure(grpc.StatusCode.NOT_FOUND,
                                 f"Servable not found for request: Specific({name}, {number})")
        return version

    def signature_def(self, model_spec):
        """(Version, SignatureDef) of a ModelSpec, its signature_name defaulting to
        serving_default."""
        version = self.find_version(model_spec)
        name = model_spec.signature_name or DEFAULT_SIGNATURE
        signature = version.meta_graph.signature_def.get(name)
        if signature is None:
            raise _invalid(f"Serving signature name: \"{name}\" not found in signature def")
        return version, signature

    def predict(self, model_spec, inputs, output_filter=()):
        """(version number, {output: np.ndarray}): the SignatureDef a ModelSpec names
        run on `inputs` ({input: np.ndarray}), which must be exactly its inputs."""
        version, signature = self.signature_def(model_spec)
        sent, expected = set(inputs), set(signature.inputs)
        if sent != expected:
            raise _invalid(
                f"input size does not match signature: {len(sent)}!={len(expected)} "
                f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}}). "
                f"Sent extra: {{{','.join(sorted(sent - expected))}}}. Missing but required: "
                f"{{{','.join(sorted(expected - sent))}}}.")
        unknown = sorted(set(output_filter) - set(signature.outputs))
        if unknown:
            raise _invalid(f"output tensor alias not found in signature: {unknown[0]} Outputs "
                           f"expected to be in the set {{{','.join(sorted(signature.outputs))}}}.")
        try:
            return version.number, run_signature(version.session, signature, inputs,
                                                 list(output_filter) or None)
        except tf.errors.OpError as error:
            raise ServingFailure(_CODES.get(error.error_code, grpc.StatusCode.UNKNOWN),
                                 error.message) from None
        except (TypeError, ValueError) as error:  # a value the session cannot feed
            raise _invalid(str(error)) from None

    def model_status(self, model_spec):
        """A GetModelStatusResponse: every version of the model, or the one asked for."""
        versions = self.models.get(model_spec.name)
        if not versions:
            raise ServingFailure(grpc.StatusCode.NOT_FOUND,
                                 f"Could not find any versions of model {model_spec.name}")
        if model_spec.version_label or model_spec.HasField("version"):
            number = (self.labels.get(model_spec.name, {}).get(model_spec.version_label)
                      if model_spec.version_label else model_spec.version.value)
            if number not in versions:
                raise ServingFailure(grpc.StatusCode.NOT_FOUND,
                                     f"Could not find version {number} of model "
                                     f"{model_spec.name}")
            versions = {number: versions[number]}
        response = get_model_status_pb2.GetModelStatusResponse()
        for number, version in sorted(versions.items()):
            status = response.model_version_status.add(version=number)
            status.status.SetInParent()  # {"error_code": "OK", ...}, as TF Serving writes
            if version.available:
                status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            else:
                status.state = get_model_status_pb2.ModelVersionStatus.END
                status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
                status.status.error_message = version.error
        return response

    def model_metadata(self, model_spec, fields=("signature_def",)):
        """A GetModelMetadataResponse with the version's SignatureDefMap."""
        if not fields:
            raise _invalid("GetModelMetadataRequest must specify at least one metadata_field")
        for field in fields:
            if field != "signature_def":
                raise _invalid(f"Metadata field {field} is not supported")
        version = self.find_version(model_spec)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model_spec.name
        response.model_spec.version.value = version.number
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for name, signature in version.meta_graph.signature_def.items():
            signatures.signature_def[name].CopyFrom(signature)
        response.metadata["signature_def"].Pack(signatures)
        return response

    # The REST front end.

    def rest(self, method, path, body):
        """The JSON answer to a REST request; raises ServingFailure."""
        match = _PREDICT_PATH.fullmatch(path) if method == "POST" else None
        if match:
            spec = self._rest_model_spec(*match.groups()[:3])
            if match[4].lower() != "predict":
                raise ServingFailure(grpc.StatusCode.UNIMPLEMENTED,
                                     f"the development server answers predict, not "
                                     f"{match[4]}")
            return self._rest_predict(spec, body)
        match = _MODEL_PATH.fullmatch(path) if method == "GET" else None
        if not match:
            raise _invalid(f"Malformed request: {method} {path}")
        if not match[1]:
            raise _invalid("Missing model name in request.")
        spec = self._rest_model_spec(*match.groups()[:3])
        if match[4]:
            metadata = self.model_metadata(spec)
            signatures = get_model_metadata_pb2.SignatureDefMap()
            metadata.metadata["signature_def"].Unpack(signatures)
            return {"model_spec": _message_json(metadata.model_spec),
                    "metadata": {"signature_def": _message_json(signatures)}}
        return _message_json(self.model_status(spec))

    @staticmethod
    def _rest_model_spec(name, version, label):
        spec = model_pb2.ModelSpec(name=name)
        if version is not None:
            if int(version) >= 2 ** 63:
                raise _invalid(f"Failed to convert version: {version} to numeric.")
            spec.version.value = int(version)
        elif label is not None:
            spec.version_label = label
        return spec

    def _rest_predict(self, spec, body):
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise _invalid(f"JSON Parse error: {error}") from None
        if not isinstance(request, dict):
            raise _invalid("JSON Parse error: the request must be a JSON object")
        signature_name = request.get("signature_name", "")
        if not isinstance(signature_name, str):
            raise _invalid("'signature_name' key must be a string value.")
        spec.signature_name = signature_name
        _, signature = self.signature_def(spec)
        columns, row_format = _request_columns(request, signature)
        inputs = {name: (json_to_array(values, signature.inputs[name])
                         if name in signature.inputs else np.asarray(values, dtype=object))
                  for name, values in columns.items()}
        _, outputs = self.predict(spec, inputs)
        return _response_body(outputs, row_format)

    # The gRPC front end.

    def grpc_call(self, method, model_spec, context, function, *args):
        """function(*args), a failure answered with its status code; logged."""
        started = time.monotonic()
        try:
            response = function(*args)
        except ServingFailure as error:
            failure = error
        except Exception as error:  # noqa: BLE001 (an answer, whatever went wrong)
            failure = ServingFailure(grpc.StatusCode.INTERNAL,
                                     f"{type(error).__name__}: {error}")
        else:
            self.log_request("gRPC", f"{method} {model_spec.name}", "OK", started)
            return response
        self.log_request("gRPC", f"{method} {model_spec.name}", failure.code.name, started)
        context.abort(failure.code, failure.message)

    def grpc_predict(self, request):
        """A PredictResponse to a PredictRequest; each input's dtype must be the
        signature's."""
        spec = request.model_spec
        _, signature = self.signature_def(spec)
        inputs = {}
        for name, proto in request.inputs.items():
            info = signature.inputs.get(name)
            if info is not None and proto.dtype != info.dtype:
                raise _invalid(f"Expects arg[{name}] to be {_type_name(info.dtype)} but "
                               f"{_type_name(proto.dtype)} is provided")
            try:
                inputs[name] = tf.make_ndarray(proto)
            except (TypeError, ValueError) as error:
                raise _invalid(f"input {name}: {error}") from None
        number, outputs = self.predict(spec, inputs, list(request.output_filter))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = number
        response.model_spec.signature_name = spec.signature_name or DEFAULT_SIGNATURE
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response


def define_flags(fv):
    flags.DEFINE_string("root", "saved_models", "The export root: <model>/<version>/.",
                        flag_values=fv)
    flags.DEFINE_integer("rest_port", 8501, "TF Serving's REST port (0: a free one).",
                         flag_values=fv)
    flags.DEFINE_integer("grpc_port", 8500, "TF Serving's gRPC port (0: a free one).",
                         flag_values=fv)
    flags.DEFINE_string("host", "127.0.0.1",
                        "The address to listen on (0.0.0.0 for every interface).",
                        flag_values=fv)
    flags.DEFINE_boolean("warmup", True, "Replay each version's warmup requests before it "
                         "serves, as TF Serving does.", flag_values=fv)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; flags start with --")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("dev_server: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    tf.get_logger().setLevel(logging.ERROR)  # the TF1 loader's deprecation notice
    fv = flags.FLAGS
    server = DevServer(fv.root, fv.rest_port, fv.grpc_port, host=fv.host, warmup=fv.warmup)
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    try:
        server.start()
    except KerasLLMError as error:
        raise SystemExit(f"dev_server: error: {error}") from None
    print(f"dev_server: serving {server.serving_summary()} on REST {server.rest_url} and "
          f"gRPC {server.grpc_target} (a development server: no batching, no reloading; "
          "Ctrl-C stops it)", flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()


if __name__ == "__main__":
    define_flags(flags.FLAGS)
    app.run(main)
