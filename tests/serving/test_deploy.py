"""The deployment recipe (deploy/): the server reads the files serving_config writes, the
compose and Kubernetes specs agree, and the compose health check, run by bash against
an HTTP server on 127.0.0.1, passes only once the model is AVAILABLE."""
import http.server
import json
import os
import subprocess
import threading

import pytest
import yaml

from kerasllm.serving.batching import BATCHING_FILE
from kerasllm.serving.model_config import MODELS_FILE, model_server_config, write_serving_config
from tests.fresh_process import ROOT

IMAGE = "tensorflow/serving:2.20.0"


def load(name):
    with open(os.path.join(ROOT, "deploy", name)) as f:
        return list(yaml.safe_load_all(f))


@pytest.fixture(scope="module")
def compose():
    return load("docker-compose.yml")[0]["services"]["tensorflow-serving"]


def test_compose_serves_the_export_root_with_its_config_files(compose):
    assert compose["image"] == IMAGE
    assert "../saved_models:/models:ro" in compose["volumes"]
    assert {"8500:8500", "8501:8501"} <= set(compose["ports"])
    assert f"--model_config_file=/models/{MODELS_FILE}" in compose["command"]
    assert f"--batching_parameters_file=/models/{BATCHING_FILE}" in compose["command"]
    assert {"--enable_batching", "--enable_per_model_batching_parameters",
            "--port=8500", "--rest_api_port=8501"} <= set(compose["command"])


def test_kubernetes_runs_the_same_server(compose):
    deployment, service = load("kubernetes.yaml")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE and container["args"] == compose["command"]
    assert container["volumeMounts"][0]["mountPath"] == "/models"
    assert {p["containerPort"] for p in container["ports"]} == {8500, 8501}
    assert {p["port"] for p in service["spec"]["ports"]} == {8500, 8501}


def status_server(state):
    """An HTTP server on 127.0.0.1 answering GET /v1/models/<name> like TF Serving."""
    requested = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 (http.server's method name)
            requested.append(self.path)
            body = json.dumps({"model_version_status": [
                {"version": "1", "state": state[0], "status": {"error_code": "OK"}}]})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, requested


def test_health_check_waits_for_an_available_model(compose, tmp_path):
    write_serving_config(str(tmp_path), model_server_config({"minilm": [1], "other": [2]}))
    state = ["LOADING"]
    server, requested = status_server(state)
    try:
        script = compose["healthcheck"]["test"][3].replace("$$", "$").replace(
            f"/models/{MODELS_FILE}", f"{tmp_path}/{MODELS_FILE}").replace(
            "8501", str(server.server_address[1]))

        def healthy():
            return subprocess.run(["bash", "-c", script], timeout=10).returncode == 0

        assert not healthy()
        state[0] = "AVAILABLE"
        assert healthy()
        assert requested == ["/v1/models/minilm"] * 2
    finally:
        server.shutdown()
