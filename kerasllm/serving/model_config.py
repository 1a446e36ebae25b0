"""The `--model_config_file` TF Serving loads: one entry per model found under an export
root (`<root>/<model>/<version>/saved_model.pb`), with its version policy and labels.

    config = model_server_config(find_models("saved_models"), pins={"minilm": [3]})
    write_serving_config("saved_models", config)   # models.config, batching.config,
                                                   # monitoring.config

Versions: by default the server loads the newest version of each model and moves to
a newer one when it appears (`latest`); pinning lists exact versions (to hold a
model at a version, or roll it back); labels (`stable`, `canary`) name loaded
versions, so clients can ask for /labels/stable instead of a number.
"""
import os

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from tensorflow_serving.config import model_server_config_pb2

from kerasllm.atomic_files import write_atomically
from kerasllm.errors import KerasLLMError
from kerasllm.serving.batching import BATCHING_FILE, Batching

MODELS_FILE = "models.config"
# For --monitoring_config_file: Prometheus metrics on the REST port at this path.
MONITORING_FILE = "monitoring.config"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def _monitoring_config_class():
    """tensorflow.serving.MonitoringConfig, as tensorflow_serving/config/
    monitoring_config.proto declares it (tensorflow-serving-api does not ship it)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/config/monitoring_config.proto",
        package="tensorflow.serving", syntax="proto3")
    field = descriptor_pb2.FieldDescriptorProto
    prometheus = file.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL,
                         label=field.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=field.TYPE_STRING,
                         label=field.LABEL_OPTIONAL)
    file.message_type.add(name="MonitoringConfig").field.add(
        name="prometheus_config", number=1, type=field.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig", label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


MonitoringConfig = _monitoring_config_class()


def monitoring_config(path=PROMETHEUS_PATH):
    """The MonitoringConfig that has TF Serving export its metrics (request counts and
    latencies by model and signature, batching queue delays, load times) for
    Prometheus on the REST port at `path`."""
    return MonitoringConfig(prometheus_config={"enable": True, "path": path})


class ServingConfigError(KerasLLMError, ValueError):
    """The export root, a pin or a label cannot make a TF Serving model config."""


def find_models(root):
    """{model name: [versions, ascending]} of the SavedModels under `root`."""
    if not os.path.isdir(root):
        raise ServingConfigError(f"{root} is not a directory; pass the export root that "
                                 "holds <model>/<version>/saved_model.pb")
    models = {}
    for name in sorted(os.listdir(root)):
        directory = os.path.join(root, name)
        if not os.path.isdir(directory) or name.startswith("."):
            continue
        versions = sorted(int(v) for v in os.listdir(directory) if v.isdigit()
                          and os.path.isfile(os.path.join(directory, v, "saved_model.pb")))
        if versions:
            models[name] = versions
    if not models:
        raise ServingConfigError(f"no SavedModel under {root} (expected "
                                 "<model>/<version>/saved_model.pb)")
    return models


def model_server_config(models, serving_root="/models", pins=None, labels=None):
    """A ModelServerConfig proto for `models` ({name: [versions]}).

    Args:
      serving_root: where the server sees the export root (the mount point in its
        container); each model's base path is <serving_root>/<name>.
      pins: {name: [versions]} to load exactly those versions.
      labels: {name: {label: version}}; a labelled version is loaded too.
    Raises:
      ServingConfigError: a pin or label names an unknown model or version.
    """
    pins, labels = pins or {}, labels or {}
    for kind, settings in (("pinned", {n: set(v) for n, v in pins.items()}),
                           ("labelled", {n: set(v.values()) for n, v in labels.items()})):
        for name, versions in settings.items():
            if name not in models:
                raise ServingConfigError(f"{kind} model {name!r} is not under the export "
                                         f"root; models: {', '.join(models)}")
            missing = sorted(versions - set(models[name]))
            if missing:
                raise ServingConfigError(f"{kind} version(s) {missing} of {name!r} do not "
                                         f"exist; versions: {models[name]}")
    config = model_server_config_pb2.ModelServerConfig()
    for name in models:
        entry = config.model_config_list.config.add(
            name=name, base_path=f"{serving_root.rstrip('/')}/{name}",
            model_platform="tensorflow")
        chosen = set(pins.get(name, ())) | set(labels.get(name, {}).values())
        if chosen:
            entry.model_version_policy.specific.versions.extend(sorted(chosen))
        else:
            entry.model_version_policy.latest.num_versions = 1
        for label, version in sorted(labels.get(name, {}).items()):
            entry.version_labels[label] = version
    return config


def write_serving_config(root, config, batching=Batching()):
    """Writes <root>/models.config, <root>/batching.config and <root>/monitoring.config,
    each atomically; returns their paths."""
    paths = []
    for name, text in ((MODELS_FILE, text_format.MessageToString(config)),
                       (BATCHING_FILE, batching.to_text()),
                       (MONITORING_FILE, text_format.MessageToString(monitoring_config()))):
        path = os.path.join(root, name)
        write_atomically(path, text)
        paths.append(path)
    return paths
