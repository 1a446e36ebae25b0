"""The development server answers as TF Serving does: REST predict in both formats
with b64 values, model status and metadata, versions and labels (from models.config),
TF Serving's error statuses and messages, the gRPC PredictionService, ModelService
and health service, and its CLI in a fresh process. The exports are tiny tf.Modules;
tests/serving/test_client.py runs real kerasllm exports behind it."""
import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from kerasllm.export.serving_session import xla_compilation_disabled
from kerasllm.export.warmup import predict_logs, write_warmup_requests
from kerasllm.serving.client import ServingClient, ServingError
from kerasllm.serving.dev_server import DevServer, DevServerError
from kerasllm.serving.model_config import (ServingConfigError, model_server_config,
                                           write_serving_config)
from tests.export.test_check import save_module
from tests.fresh_process import ROOT
from tests.ports import free_ports


def save_toy(path, scale):
    """A SavedModel with a string signature (serving_default: a float and a bytes
    output), a two-input numeric one (`scale`) and a single-output one (`length`);
    outputs are multiplied by `scale`, so versions differ."""
    module = tf.Module()
    module.scale = tf.Variable(float(scale))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve(text):
        return {"length": tf.cast(tf.strings.length(text), tf.float32) * module.scale,
                "upper_bytes": tf.strings.upper(text)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x"),
                                  tf.TensorSpec([None], tf.int32, name="n")])
    def scale_inputs(x, n):
        return {"y": x * tf.cast(n, tf.float32) * module.scale}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def length(text):
        return {"length": tf.strings.length(text)}

    tf.saved_model.save(module, path, signatures={"serving_default": serve,
                                                  "scale": scale_inputs, "length": length})
    write_warmup_requests(path, predict_logs("toy", {"length": {"text": ["warm"]}}, [1, 2]))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """toy versions 1, 2 and 3 (labels stable: 1, canary: 2, so 1 and 2 are served,
    not 3), a broken export, and two whose function must be XLA-compiled: `xla`
    without warmup requests, `xla_warm` with one."""
    root = tmp_path_factory.mktemp("saved_models")
    for version in (1, 2, 3):
        save_toy(str(root / "toy" / str(version)), scale=version)
    for name in ("xla", "xla_warm"):
        save_module(str(root / name / "1"), lambda m, x: x * m.scale, jit_compile=True)
    write_warmup_requests(str(root / "xla_warm" / "1"),
                          predict_logs("xla_warm", {"serving_default": {"text": ["x"]}}, [1]))
    os.makedirs(root / "broken" / "1")
    (root / "broken" / "1" / "saved_model.pb").write_bytes(b"not a SavedModel")
    write_serving_config(str(root), model_server_config(
        {"toy": [1, 2, 3], "xla": [1], "xla_warm": [1], "broken": [1]},
        labels={"toy": {"stable": 1, "canary": 2}}))
    return root


@pytest.fixture(scope="module")
def server(root):
    with DevServer(str(root)) as server:
        yield server


def rest(server, path, body=None):
    """(HTTP status, JSON answer) of a GET (no body) or POST to the server."""
    data = None if body is None else (body if isinstance(body, bytes)
                                      else json.dumps(body).encode())
    request = urllib.request.Request(server.rest_url + path, data=data)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_columnar_and_row_predictions_with_b64(server):
    status, answer = rest(server, "/v1/models/toy:predict", {
        "inputs": {"text": ["ab", {"b64": base64.b64encode(b"xyz").decode()}]}})
    assert status == 200
    assert answer == {"outputs": {"length": [4.0, 6.0], "upper_bytes": [
        {"b64": base64.b64encode(b"AB").decode()}, {"b64": base64.b64encode(b"XYZ").decode()}]}}
    status, answer = rest(server, "/v1/models/toy:predict",
                          {"instances": [{"text": "ab"}, {"text": "xyz"}]})
    assert status == 200 and [row["length"] for row in answer["predictions"]] == [4.0, 6.0]
    # One input: bare instances; one output: bare predictions and outputs.
    assert rest(server, "/v1/models/toy:predict", {
        "signature_name": "length", "instances": ["ab", "xyz"]}) == (200, {"predictions": [2, 3]})
    assert rest(server, "/v1/models/toy:predict", {
        "signature_name": "length", "inputs": ["abcd"]}) == (200, {"outputs": [4]})


def test_json_numbers_take_the_signatures_dtype(server):
    status, answer = rest(server, "/v1/models/toy/versions/1:predict", {
        "signature_name": "scale", "inputs": {"x": [1, 2.5], "n": [2, 3.0]}})
    assert status == 200 and answer == {"outputs": [2.0, 7.5]}
    status, answer = rest(server, "/v1/models/toy/versions/1:predict", {
        "signature_name": "scale", "inputs": {"x": [1.0], "n": [1.5]}})
    assert status == 400 and "not of expected type: int32" in answer["error"]


def test_versions_labels_and_newest_version(server):
    def length(path):
        return rest(server, path + ":predict", {"inputs": {"text": ["ab"]}})[1]["outputs"][
            "length"]
    assert length("/v1/models/toy") == [4.0]  # newest served version: 2 (3 is not loaded)
    assert length("/v1/models/toy/versions/1") == [2.0]
    assert length("/v1/models/toy/labels/stable") == [2.0]
    assert length("/v1/models/toy/labels/canary") == [4.0]


def test_status_of_every_model_and_version(server):
    assert rest(server, "/v1/models/toy") == (200, {"model_version_status": [
        {"version": str(v), "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}} for v in (1, 2)]})
    assert rest(server, "/v1/models/toy/versions/2")[1]["model_version_status"][0][
        "version"] == "2"
    assert rest(server, "/v1/models/toy/labels/stable")[1]["model_version_status"][0][
        "version"] == "1"
    status, answer = rest(server, "/v1/models/broken")
    assert status == 200
    [broken] = answer["model_version_status"]
    assert broken["state"] == "END" and broken["status"]["error_code"] == "UNKNOWN"
    assert broken["status"]["error_message"]


def test_metadata_has_tf_servings_shape(server):
    status, answer = rest(server, "/v1/models/toy/labels/stable/metadata")
    assert status == 200
    assert answer["model_spec"] == {"name": "toy", "signature_name": "", "version": "1"}
    signatures = answer["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "scale", "length"} <= set(signatures)
    text = signatures["serving_default"]["inputs"]["text"]
    assert text["dtype"] == "DT_STRING" and text["name"].startswith("serving_default_text")
    assert text["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    assert signatures["scale"]["outputs"]["y"]["dtype"] == "DT_FLOAT"
    assert signatures["scale"]["method_name"] == "tensorflow/serving/predict"
    assert rest(server, "/v1/models/toy/metadata")[1]["model_spec"]["version"] == "2"


@pytest.mark.parametrize("method_path, body, status, message", [
    ("/v1/models/nobody:predict", {"inputs": ["x"]}, 404,
     "Servable not found for request: Latest(nobody)"),
    ("/v1/models/toy/versions/3:predict", {"inputs": ["x"]}, 404,
     "Servable not found for request: Specific(toy, 3)"),
    ("/v1/models/broken:predict", {"inputs": ["x"]}, 404,
     "Servable not found for request: Latest(broken)"),
    # TF Serving answers an unknown label INVALID_ARGUMENT (400), not 404.
    ("/v1/models/toy/labels/nope:predict", {"inputs": ["x"]}, 400,
     "Unrecognized servable version label: nope"),
    ("/v1/models/toy:predict", {"signature_name": "nope", "inputs": ["x"]}, 400,
     'Serving signature name: "nope" not found in signature def'),
    ("/v1/models/toy:predict", {"inputs": {"txt": ["x"]}}, 400,
     "input size does not match signature: 1!=1 len({txt}) != len({text}). "
     "Sent extra: {txt}. Missing but required: {text}."),
    ("/v1/models/toy:predict", {"signature_name": "scale", "inputs": {"x": [1.0]}}, 400,
     "Missing but required: {n}"),
    ("/v1/models/toy:predict", b"{not json", 400, "JSON Parse error"),
    ("/v1/models/toy:predict", {"instances": ["x"], "inputs": ["x"]}, 400,
     "Not allowed to mix 'inputs' and 'instances' keys"),
    ("/v1/models/toy:predict", {"signature_name": 3, "inputs": ["x"]}, 400,
     "'signature_name' key must be a string value."),
    ("/v1/models/toy:predict", {"inputs": {"text": [1, 2]}}, 400,
     "is not of expected type: string"),
    ("/v1/models/nobody", None, 404, "Could not find any versions of model nobody"),
    ("/v1/models/toy/versions/7", None, 404, "Could not find version 7 of model toy"),
    ("/v1/models/toy/versions/7/metadata", None, 404, "Specific(toy, 7)"),
    ("/v1/models", None, 400, "Missing model name in request."),
    ("/v1/nothing", None, 400, "Malformed request: GET /v1/nothing"),
])
def test_errors_have_tf_servings_status_and_message(server, method_path, body, status,
                                                     message):
    answer = rest(server, method_path, body)
    assert answer[0] == status and message in answer[1]["error"], answer


def test_an_xla_compiled_function_fails_as_in_tf_serving(server):
    """XLA compilation is disabled: the function fails when first run, in a request
    (INTERNAL: 500) or, with warmup requests, at load, so the version never serves."""
    status, answer = rest(server, "/v1/models/xla:predict", {"inputs": ["abc"]})
    assert status == 500 and "XLA compilation disabled" in answer["error"]
    assert xla_compilation_disabled()
    [version] = rest(server, "/v1/models/xla_warm")[1]["model_version_status"]
    assert version["state"] == "END"
    assert "warmup request 0 (serving_default) failed" in version["status"]["error_message"]
    assert "XLA compilation disabled" in version["status"]["error_message"]


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_target) as channel:
        yield channel


def predict_request(name, signature="serving_default", **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = name, signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def test_grpc_predict_metadata_status_and_health(channel):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_request("toy", text=np.array([b"ab", b"xyz"]))
    request.model_spec.version_label = "stable"
    response = stub.Predict(request, timeout=60)
    assert response.model_spec.version.value == 1
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["length"]), [2.0, 3.0])
    assert list(tf.make_ndarray(response.outputs["upper_bytes"])) == [b"AB", b"XYZ"]
    request.output_filter.append("length")
    assert list(stub.Predict(request, timeout=60).outputs) == ["length"]

    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(predict_request("toy", "scale", x=np.array([1.0], np.float32),
                                     n=np.array([1.0], np.float32)), timeout=60)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expects arg[n] to be int32 but float is provided" in error.value.details()
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(predict_request("nobody", text=np.array([b"x"])), timeout=60)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND

    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(
        metadata_field=["signature_def"])
    metadata_request.model_spec.name = "toy"
    metadata = stub.GetModelMetadata(metadata_request, timeout=60)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    metadata.metadata["signature_def"].Unpack(signatures)
    assert metadata.model_spec.version.value == 2
    assert set(signatures.signature_def["scale"].inputs) == {"x", "n"}

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "toy"
    statuses = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
        status_request, timeout=60).model_version_status
    assert [(s.version, s.state) for s in statuses] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]

    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=""), timeout=60)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("transport", ["grpc", "rest", "rest_rows"])
def test_serving_client_works_unchanged(server, transport):
    settings = {"grpc": {"grpc_target": server.grpc_target},
                "rest": {"rest_url": server.rest_url},
                "rest_rows": {"rest_url": server.rest_url, "request_format": "row"}}[transport]
    client = ServingClient("toy", label="canary", retries=0, **settings)
    outputs = client.predict({"x": np.array([1.5], np.float32), "n": np.array([2], np.int32)},
                             "scale")
    np.testing.assert_allclose(outputs["output" if "rest" in transport else "y"], [6.0])
    assert client.predict({"text": ["ab"]})["upper_bytes"].tolist() == [b"AB"]
    with pytest.raises(ServingError, match="not found"):
        ServingClient("toy", version=9, retries=0, **settings).predict({"text": ["ab"]})


def test_clear_errors_for_no_models_a_port_in_use_bad_labels_and_no_export_that_loads(root, server, tmp_path):
    with pytest.raises(ServingConfigError, match="no SavedModel under"):
        DevServer(str(tmp_path)).start()
    with pytest.raises(DevServerError, match=f"cannot listen for REST on 127.0.0.1:"
                                             f"{server.rest_port}.*--rest_port"):
        DevServer(str(root), rest_port=server.rest_port).start()
    with pytest.raises(DevServerError, match=f"cannot listen for gRPC on 127.0.0.1:"
                                             f"{server.grpc_port}.*--grpc_port"):
        DevServer(str(root), grpc_port=server.grpc_port).start()
    with pytest.raises(DevServerError, match=r"labels of 'toy' name version\(s\) \[9\]"):
        DevServer(str(root), labels={"toy": {"old": 9}}).start()
    os.makedirs(tmp_path / "only_broken" / "broken")
    os.symlink(root / "broken" / "1", tmp_path / "only_broken" / "broken" / "1")
    with pytest.raises(DevServerError, match="no export under .*only_broken could be loaded"):
        DevServer(str(tmp_path / "only_broken")).start()
    assert xla_compilation_disabled()  # the failed starts left the running server's switch


def test_the_command_serves_until_stopped(root):
    rest_port, grpc_port = free_ports(2)
    process = subprocess.Popen(
        [sys.executable, "-m", "kerasllm.serving.dev_server", f"--root={root}",
         f"--rest_port={rest_port}", f"--grpc_port={grpc_port}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready = process.stdout.readline()  # printed once every model is loaded
        assert f"REST http://127.0.0.1:{rest_port}" in ready, process.stderr.read()[-3000:]
        assert f"gRPC 127.0.0.1:{grpc_port}" in ready and "toy 1, 2" in ready
        client = ServingClient("toy", rest_url=f"http://127.0.0.1:{rest_port}", retries=0)
        assert client.predict({"text": ["abc"]})["length"].tolist() == [6.0]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read()
    assert "cannot load broken version 1" in stderr
    assert "REST POST /v1/models/toy:predict 200" in stderr

