"""A client for kerasllm models served by TF Serving, over REST or gRPC.

    client = ServingClient("minilm", rest_url="http://localhost:8501")
    client.embed(["A man is playing a guitar."])          # [1, 384] unit vectors
    client = ServingClient("classifier", grpc_target="localhost:8500", label="stable")
    client.classify(["what a film"])                      # [("pos", [0.1, 0.9])]
    ServingClient("smollm2", rest_url=...).generate(["Once upon a time"], max_new_tokens=20)

Both transports address a model as TF Serving does: its name, and optionally a version
number or a version label (see kerasllm.serving.model_config). A call that the server
answers UNAVAILABLE (or that cannot connect) is retried with exponential backoff; any
other failure raises ServingError naming the model, version and signature, with its
`kind` ("not_found", "invalid", "unavailable" or "error") for callers that map it to
their own errors (the OpenAI-compatible gateway, kerasllm.serving.gateway).
`signatures()` reads the model's signatures from TF Serving's metadata API.
"""
import base64
import json
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import (get_model_metadata_pb2, predict_pb2,
                                     prediction_service_pb2_grpc)

from kerasllm.errors import KerasLLMError

FORMATS = ("columnar", "row")


class ServingError(KerasLLMError, RuntimeError):
    """The server could not answer a prediction request.

    Attributes:
      kind: "not_found" (no such model, version, label or signature), "invalid" (the
        request's inputs), "unavailable" (still unreachable after the retries; also a
        timeout), "unimplemented" (the server lacks the API, e.g. metadata) or "error".
    """

    def __init__(self, message, kind="error"):
        super().__init__(message)
        self.kind = kind


class _Unavailable(Exception):
    """A failure worth retrying: the server is starting, overloaded or unreachable."""


# TF Serving's REST status codes (its ToHTTPStatusCode) and gRPC codes, as kinds.
_HTTP_KINDS = {400: "invalid", 404: "not_found", 501: "unimplemented"}
_GRPC_KINDS = {grpc.StatusCode.NOT_FOUND: "not_found",
               grpc.StatusCode.INVALID_ARGUMENT: "invalid",
               grpc.StatusCode.FAILED_PRECONDITION: "invalid",
               grpc.StatusCode.UNIMPLEMENTED: "unimplemented"}


def _model_path(model, version, label):
    path = f"/v1/models/{model}"
    if version is not None:
        path += f"/versions/{version}"
    elif label is not None:
        path += f"/labels/{label}"
    return path


def _signatures_of(signature_defs):
    """{signature: {"inputs": [names], "outputs": [names]}} of a SignatureDefMap as
    JSON (TF Serving's REST metadata) or a proto's MessageToDict."""
    return {name: {"inputs": sorted(spec.get("inputs", {})),
                   "outputs": sorted(spec.get("outputs", {}))}
            for name, spec in signature_defs.items()}


def _json_value(value):
    """A request value as JSON: text as a string, other bytes as {"b64": ...}."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_json(value):
    """A response value as NumPy: {"b64": ...} decoded, strings as bytes (as gRPC and
    TensorFlow give them)."""
    def convert(item):
        if isinstance(item, dict) and set(item) == {"b64"}:
            return base64.b64decode(item["b64"])
        if isinstance(item, str):
            return item.encode("utf-8")
        if isinstance(item, list):
            return [convert(i) for i in item]
        return item

    converted = convert(value)
    return np.asarray(converted, dtype=object if _holds_bytes(converted) else None)


def _holds_bytes(value):
    if isinstance(value, list):
        return any(_holds_bytes(v) for v in value)
    return isinstance(value, bytes)


class RestTransport:
    """TF Serving's REST API: POST <url>/v1/models/<name>[/versions/N|/labels/L]:predict
    with {"signature_name", "inputs"} (columnar) or {"instances"} (row)."""

    def __init__(self, url, request_format="columnar"):
        if request_format not in FORMATS:
            raise ValueError(f"request_format must be one of {FORMATS}, got {request_format!r}")
        self.url, self.request_format = url.rstrip("/"), request_format

    def _call(self, request, timeout):
        """The JSON answer to `request`; ServingError or _Unavailable otherwise."""
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            message = error.read().decode("utf-8", "replace")
            if error.code == 503:
                raise _Unavailable(message) from None
            try:
                message = json.loads(message).get("error", message)
            except (ValueError, AttributeError):
                pass
            raise ServingError(message, _HTTP_KINDS.get(error.code, "error")) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            raise _Unavailable(str(getattr(error, "reason", error))) from None

    def metadata(self, model, version, label, timeout):
        """The model's signatures: GET <url>/v1/models/<name>[...]/metadata."""
        answer = self._call(urllib.request.Request(
            f"{self.url}{_model_path(model, version, label)}/metadata"), timeout)
        return _signatures_of(answer["metadata"]["signature_def"]["signature_def"])

    def predict(self, model, version, label, signature, inputs, timeout):
        path = _model_path(model, version, label)
        columns = {name: [_json_value(v) for v in np.asarray(values).tolist()]
                   for name, values in inputs.items()}
        if self.request_format == "columnar":
            body = {"signature_name": signature, "inputs": columns}
        else:
            rows = len(next(iter(columns.values())))
            body = {"signature_name": signature,
                    "instances": [{name: column[i] for name, column in columns.items()}
                                  for i in range(rows)]}
        request = urllib.request.Request(
            f"{self.url}{path}:predict", data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json"}, method="POST")
        answer = self._call(request, timeout)
        if "outputs" in answer:
            outputs = answer["outputs"]
            if not isinstance(outputs, dict):  # a signature with a single output
                outputs = {"output": outputs}
            return {name: _from_json(value) for name, value in outputs.items()}
        predictions = answer["predictions"]
        if predictions and not isinstance(predictions[0], dict):
            return {"output": _from_json(predictions)}
        return {name: _from_json([row[name] for row in predictions])
                for name in predictions[0]} if predictions else {}


class GrpcTransport:
    """TF Serving's gRPC PredictionService."""

    def __init__(self, target):
        self.target = target
        self.channel = grpc.insecure_channel(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    @staticmethod
    def _spec(request, model, version, label):
        request.model_spec.name = model
        if version is not None:
            request.model_spec.version.value = int(version)
        elif label is not None:
            request.model_spec.version_label = label

    @staticmethod
    def _call(method, request, timeout):
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.UNAVAILABLE,
                                grpc.StatusCode.DEADLINE_EXCEEDED):
                raise _Unavailable(f"{error.code().name}: {error.details()}") from None
            raise ServingError(f"{error.code().name}: {error.details()}",
                               _GRPC_KINDS.get(error.code(), "error")) from None

    def metadata(self, model, version, label, timeout):
        """The model's signatures: PredictionService.GetModelMetadata."""
        request = get_model_metadata_pb2.GetModelMetadataRequest()
        self._spec(request, model, version, label)
        request.metadata_field.append("signature_def")
        response = self._call(self.stub.GetModelMetadata, request, timeout)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_defs)
        return _signatures_of(json_format.MessageToDict(signature_defs).get("signatureDef", {}))

    def predict(self, model, version, label, signature, inputs, timeout):
        request = predict_pb2.PredictRequest()
        self._spec(request, model, version, label)
        request.model_spec.signature_name = signature
        for name, values in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(np.asarray(values)))
        response = self._call(self.stub.Predict, request, timeout)
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


class ServingClient:
    """Predictions from one served model.

    Args:
      model: the model's name in the server's config.
      rest_url: e.g. "http://localhost:8501"; or
      grpc_target: e.g. "localhost:8500" (exactly one of the two).
      version / label: a version number or a version label; default the server's
        newest loaded version.
      timeout: seconds per attempt.
      retries: further attempts after UNAVAILABLE or a failed connection, waiting
        backoff, 2 * backoff, ... seconds in between.
      request_format: REST only, "columnar" ({"inputs"}) or "row" ({"instances"}).
      transport: instead of rest_url / grpc_target, a RestTransport or GrpcTransport
        shared by many clients (one gRPC channel for all of a gateway's models).
    """

    def __init__(self, model, *, rest_url=None, grpc_target=None, version=None, label=None,
                 timeout=30.0, retries=3, backoff=0.5, request_format="columnar",
                 transport=None):
        if (rest_url is None) + (grpc_target is None) + (transport is None) != 2:
            raise ValueError("give exactly one of rest_url, grpc_target and transport")
        if version is not None and label is not None:
            raise ValueError("give a version or a label, not both")
        self.model, self.version, self.label = model, version, label
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.transport = transport or (RestTransport(rest_url, request_format) if rest_url
                                       else GrpcTransport(grpc_target))

    def _describe(self, signature):
        which = (f"version {self.version}" if self.version is not None
                 else f"label {self.label!r}" if self.label is not None else "newest version")
        return (f"model {self.model!r} ({which}), " + (f"signature {signature!r}"
                if signature is not None else "metadata"))

    def _with_retries(self, call, what):
        for attempt in range(self.retries + 1):
            try:
                return call()
            except _Unavailable as error:
                if attempt == self.retries:
                    raise ServingError(f"{what}: the server is unavailable after "
                                       f"{attempt + 1} attempts ({error})",
                                       "unavailable") from None
                time.sleep(self.backoff * 2 ** attempt)
            except ServingError as error:
                raise ServingError(f"{what}: {error}", error.kind) from None

    def predict(self, inputs, signature="serving_default"):
        """{output name: np.ndarray} of `signature` on `inputs` ({name: list or array},
        every input with the same number of rows; strings come back as bytes)."""
        return self._with_retries(
            lambda: self.transport.predict(self.model, self.version, self.label, signature,
                                           inputs, self.timeout),
            self._describe(signature))

    def signatures(self):
        """{signature name: {"inputs": [names], "outputs": [names]}} from TF Serving's
        model metadata API (ServingError of kind "unimplemented" from a server without
        it)."""
        return self._with_retries(
            lambda: self.transport.metadata(self.model, self.version, self.label,
                                            self.timeout),
            self._describe(None))

    def embed(self, texts):
        """float32 [N, hidden]: the unit-length sentence embeddings of an encoder export."""
        return self.predict({"text": list(texts)})["sentence_embedding"].astype(np.float32)

    def fill_mask(self, texts):
        """For each text, for each [MASK] in it, [(token, score)] best first."""
        outputs = self.predict({"text": list(texts)}, "fill_mask")
        return [[list(zip([t.decode() for t in tokens], scores.tolist()))
                 for position, tokens, scores in zip(positions, row_tokens, row_scores)
                 if position >= 0]
                for positions, row_tokens, row_scores in zip(
                    outputs["mask_positions"], outputs["top_tokens"], outputs["top_scores"])]

    def classify(self, texts, texts_b=None):
        """[(label, probabilities by label id)] of a classifier export, for texts or
        text pairs."""
        inputs = {"text": list(texts)}
        if texts_b is not None:
            inputs["text_b"] = list(texts_b)
        outputs = self.predict(inputs, "classify_pair" if texts_b is not None else "classify")
        return [(label.decode(), probabilities.tolist())
                for label, probabilities in zip(outputs["label"], outputs["probabilities"])]

    def generate(self, prompts, *, max_new_tokens=64, temperature=0.0, top_k=0, top_p=1.0,
                 seed=0, stop=""):
        """[(text, finish reason)] of a GPT export's `generate_with_options` signature
        for each prompt, every prompt with these settings (temperature 0 is greedy)."""
        rows = len(prompts)
        outputs = self.predict({
            "prompt": list(prompts),
            "max_new_tokens": np.full(rows, max_new_tokens, np.int32),
            "temperature": np.full(rows, temperature, np.float32),
            "top_k": np.full(rows, top_k, np.int32), "top_p": np.full(rows, top_p, np.float32),
            "seed": np.full(rows, seed, np.int32), "stop": [stop] * rows},
            "generate_with_options")
        return [(text.decode(), reason.decode())
                for text, reason in zip(outputs["text"], outputs["finish_reason"])]

    def translate(self, texts, *, beam_size=4, length_penalty=0.6, max_length=0):
        """[(translation, score)] of a seq2seq export's `translate_with_options`
        signature for each text, every text with these settings (max_length 0: the
        export's default, from each source's length)."""
        rows = len(texts)
        outputs = self.predict({
            "text": list(texts), "beam_size": np.full(rows, beam_size, np.int32),
            "length_penalty": np.full(rows, length_penalty, np.float32),
            "max_length": np.full(rows, max_length, np.int32)}, "translate_with_options")
        return [(text.decode(), float(score))
                for text, score in zip(outputs["translation"], outputs["score"])]
