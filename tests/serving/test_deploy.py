"""The deployment recipe (deploy/): the server reads the files serving_config writes
(parsed as TF Serving's text protos), the compose and Kubernetes specs agree on the
server and on the gateway in front of it, Prometheus scrapes both, the gateway's image
runs the gateway, and the compose health checks, run against HTTP servers on
127.0.0.1, pass only once the model is AVAILABLE or the gateway answers /health."""
import configparser
import http.server
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from urllib.parse import urlsplit

import pytest
import yaml
from absl import flags
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from kerasllm.serving import gateway
from kerasllm.serving.batching import BATCHING_FILE, DECODING, Batching, parse_batching
from kerasllm.serving.model_config import (MODELS_FILE, MONITORING_FILE, PROMETHEUS_PATH,
                                           MonitoringConfig, model_server_config,
                                           write_serving_config)
from tests.fresh_process import ROOT

IMAGE = "tensorflow/serving:2.20.0"
GATEWAY_MODULE = "kerasllm.serving.gateway"


def load(name):
    with open(os.path.join(ROOT, "deploy", name)) as f:
        return list(yaml.safe_load_all(f))


def read(name):
    with open(os.path.join(ROOT, name)) as f:
        return f.read()


@pytest.fixture(scope="module")
def services():
    return load("docker-compose.yml")[0]["services"]


@pytest.fixture(scope="module")
def compose(services):
    return services["tensorflow-serving"]


@pytest.fixture(scope="module")
def kubernetes():
    """{(kind, name): document} of kubernetes.yaml."""
    return {(d["kind"], d["metadata"]["name"]): d for d in load("kubernetes.yaml")}


def container(deployment):
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def flag(argv, name):
    """The value of --name=value in argv (None when absent)."""
    values = [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]
    assert len(values) <= 1, f"--{name} given twice"
    return values[0] if values else None


def test_compose_serves_the_export_root_with_its_config_files(compose):
    assert compose["image"] == IMAGE
    assert "../saved_models:/models:ro" in compose["volumes"]
    assert {"8500:8500", "8501:8501"} <= set(compose["ports"])
    assert f"--model_config_file=/models/{MODELS_FILE}" in compose["command"]
    assert f"--batching_parameters_file=/models/{BATCHING_FILE}" in compose["command"]
    assert {"--enable_batching", "--enable_per_model_batching_parameters",
            "--port=8500", "--rest_api_port=8501"} <= set(compose["command"])
    assert f"--monitoring_config_file=/models/{MONITORING_FILE}" in compose["command"]
    assert "--enable_grpc_healthcheck_service=true" in compose["command"]
    # Longer than TF Serving's 30 s default: CPU generation runs in one predict call.
    assert int(flag(compose["command"], "rest_api_timeout_in_ms")) >= 60_000


def test_kubernetes_runs_the_same_server(compose, kubernetes):
    serving = container(kubernetes["Deployment", "kerasllm-serving"])
    service = kubernetes["Service", "kerasllm-serving"]
    assert serving["image"] == IMAGE and serving["args"] == compose["command"]
    assert serving["volumeMounts"][0]["mountPath"] == "/models"
    assert {p["containerPort"] for p in serving["ports"]} == {8500, 8501}
    assert {p["port"] for p in service["spec"]["ports"]} == {8500, 8501}


def test_kubernetes_probes_grpc_health_on_the_grpc_port(compose, kubernetes):
    serving = container(kubernetes["Deployment", "kerasllm-serving"])
    assert "--enable_grpc_healthcheck_service=true" in serving["args"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert serving[probe]["grpc"] == {"port": int(flag(serving["args"], "port"))}


def gateway_argv(command, serving_host):
    """The gateway's flags in a spec, its serving host and model placeholder made
    common, after checking they run the gateway module against `serving_host`."""
    assert command[:3] == ["python", "-m", GATEWAY_MODULE]
    argv = command[3:]
    serving = urlsplit(flag(argv, "serving"))
    assert (serving.scheme, serving.hostname, serving.port) == ("http", serving_host, 8501)
    return [a.replace(serving_host, "SERVING").replace("${KERASLLM_MODELS:-}", "MODELS")
            .replace("$(KERASLLM_MODELS)", "MODELS") for a in argv]


def test_compose_and_kubernetes_run_the_same_gateway(services, compose, kubernetes):
    service = services["gateway"]
    deployment = container(kubernetes["Deployment", "kerasllm-gateway"])
    # Each reaches TF Serving's REST port by its own service name.
    argv = gateway_argv(service["command"], "tensorflow-serving")
    assert argv == gateway_argv(deployment["command"], "kerasllm-serving")
    assert "tensorflow-serving" in services and ("Service", "kerasllm-serving") in kubernetes
    assert flag(argv, "host") == "0.0.0.0" and flag(argv, "port") == "8000"
    assert service["ports"] == ["8000:8000"]
    assert [p["containerPort"] for p in deployment["ports"]] == [8000]
    assert [p["port"] for p in kubernetes["Service", "kerasllm-gateway"]["spec"]["ports"]] \
        == [8000]
    assert {"name": "KERASLLM_MODELS", "value": ""} in deployment["env"]
    # The gateway gives up after TF Serving does, so the server's deadline ends it.
    assert float(flag(argv, "timeout_seconds")) * 1000 > int(
        flag(compose["command"], "rest_api_timeout_in_ms"))
    assert service["depends_on"] == {"tensorflow-serving": {"condition": "service_healthy"}}
    assert deployment["readinessProbe"]["httpGet"]["path"] == "/health"
    # Every flag is one the gateway defines, with a value it accepts.
    fv = flags.FlagValues()
    gateway.define_flags(fv)
    fv([GATEWAY_MODULE] + [a.replace("SERVING", "tensorflow-serving")
                           .replace("MODELS", "smollm2,minilm") for a in argv])
    assert fv.models == ["smollm2", "minilm"]


def test_serving_config_files_parse_as_tf_serving_text_protos(tmp_path, compose):
    paths = write_serving_config(str(tmp_path), model_server_config({"minilm": [1]}))
    assert sorted(os.path.basename(p) for p in paths) == sorted(
        [MODELS_FILE, BATCHING_FILE, MONITORING_FILE])
    for name in (MODELS_FILE, BATCHING_FILE, MONITORING_FILE):
        assert f"/models/{name}" in " ".join(compose["command"])
    models = text_format.Parse((tmp_path / MODELS_FILE).read_text(),
                               model_server_config_pb2.ModelServerConfig())
    assert models.model_config_list.config[0].base_path == "/models/minilm"
    assert parse_batching((tmp_path / BATCHING_FILE).read_text()).max_batch_size.value == 32
    monitoring = text_format.Parse((tmp_path / MONITORING_FILE).read_text(),
                                   MonitoringConfig())
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == PROMETHEUS_PATH


@pytest.mark.parametrize("batching", [Batching(), DECODING], ids=["default", "decoding"])
def test_batching_parameters_keep_tf_serving_rules(batching):
    """The checks TF Serving makes before it serves a model with these parameters."""
    proto = parse_batching(batching.to_text())
    sizes = list(proto.allowed_batch_sizes)
    assert sizes == sorted(set(sizes))
    if proto.enable_large_batch_splitting.value:
        assert sizes[-1] == proto.max_execution_batch_size.value <= proto.max_batch_size.value
    else:
        assert sizes[-1] == proto.max_batch_size.value
        assert not proto.HasField("max_execution_batch_size")


def test_decoding_splits_large_requests_into_warmed_batches():
    proto = parse_batching(DECODING.to_text())
    assert proto.enable_large_batch_splitting.value
    assert proto.max_execution_batch_size.value == 8 < proto.max_batch_size.value
    with pytest.raises(ValueError, match="last allowed batch size must be 8"):
        Batching(max_batch_size=32, allowed_batch_sizes=(1, 32),
                 enable_large_batch_splitting=True, max_execution_batch_size=8)


def test_prometheus_scrapes_the_server_and_the_gateway(services):
    (config,) = load("prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    serving, gate = jobs["tensorflow-serving"], jobs["kerasllm-gateway"]
    assert serving["metrics_path"] == PROMETHEUS_PATH
    assert serving["static_configs"][0]["targets"] == ["tensorflow-serving:8501"]
    assert gate["metrics_path"] == "/metrics"
    assert gate["static_configs"][0]["targets"] == ["gateway:8000"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in \
        services["prometheus"]["volumes"]


def test_the_gateway_image_installs_the_gateway_extra_and_runs_it(services):
    dockerfile = read("deploy/gateway.Dockerfile")
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert "pip install --no-cache-dir '.[gateway]'" in dockerfile
    for package in ("kerasllm", "trainers"):
        assert f"COPY {package} ./{package}" in dockerfile
    (cmd,) = re.findall(r"^CMD (\[.*?\])$", dockerfile.replace("\\\n", ""), re.M | re.S)
    assert json.loads(cmd)[:3] == ["python", "-m", GATEWAY_MODULE]
    assert "--host=0.0.0.0" in json.loads(cmd)
    assert importlib.util.find_spec(GATEWAY_MODULE) is not None
    setup = configparser.ConfigParser()
    setup.read(os.path.join(ROOT, "setup.cfg"))
    assert "fastapi" in setup["options.extras_require"]["gateway"]
    assert services["gateway"]["build"] == {"context": "..",
                                            "dockerfile": "deploy/gateway.Dockerfile"}


def status_server(state):
    """An HTTP server on 127.0.0.1 answering GET /v1/models/<name> like TF Serving, and
    GET /health like the gateway (200 while state[0] is AVAILABLE, else 503)."""
    requested = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 (http.server's method name)
            requested.append(self.path)
            if self.path == "/health":
                self.send_response(200 if state[0] == "AVAILABLE" else 503)
                self.end_headers()
                self.wfile.write(b"ok")
                return
            body = json.dumps({"model_version_status": [
                {"version": "1", "state": state[0], "status": {"error_code": "OK"}}]})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body.encode())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, requested


def assert_healthy_only_once_available(command, path):
    """`command(port)`, the argv of a health check against a status_server on `port`,
    fails while the model loads, passes once it is AVAILABLE, and asks for `path`."""
    state = ["LOADING"]
    server, requested = status_server(state)
    try:
        def healthy():
            return subprocess.run(command(server.server_address[1]), timeout=10,
                                  capture_output=True).returncode == 0

        assert not healthy()
        state[0] = "AVAILABLE"
        assert healthy()
        assert requested == [path] * 2
    finally:
        server.shutdown()


def test_health_check_waits_for_an_available_model(compose, tmp_path):
    write_serving_config(str(tmp_path), model_server_config({"minilm": [1], "other": [2]}))
    script = compose["healthcheck"]["test"][3].replace("$$", "$").replace(
        f"/models/{MODELS_FILE}", f"{tmp_path}/{MODELS_FILE}")
    assert_healthy_only_once_available(
        lambda port: ["bash", "-c", script.replace("8501", str(port))], "/v1/models/minilm")


def test_gateway_health_check_asks_for_health(services):
    test = services["gateway"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert_healthy_only_once_available(
        lambda port: [sys.executable, "-c", test[3].replace("8000", str(port))], "/health")
