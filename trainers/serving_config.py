"""Writes the TF Serving config files for every model under an export root.

    python -m trainers.serving_config --root=saved_models
    python -m trainers.serving_config --root=saved_models --pin=minilm=3 \
        --label=classifier=stable:4 --label=classifier=canary:5

Writes <root>/models.config (for --model_config_file), <root>/batching.config (for
--batching_parameters_file with --enable_batching) and <root>/monitoring.config (for
--monitoring_config_file: Prometheus metrics at /monitoring/prometheus/metrics).
Each model loads its newest version unless pinned or labelled (see
kerasllm.serving.model_config).
"""
from absl import flags

from kerasllm.serving.model_config import (ServingConfigError, find_models,
                                           model_server_config, write_serving_config)
from trainers import common


def define_flags(fv):
    flags.DEFINE_string("root", "saved_models", "The export root: <model>/<version>/.",
                        flag_values=fv)
    flags.DEFINE_string("serving_root", "/models",
                        "Where the server sees --root (its mount point in the container).",
                        flag_values=fv)
    flags.DEFINE_multi_string("pin", [],
                              "MODEL=VERSION[,VERSION...]: load exactly these versions "
                              "(hold a model, or roll it back).", flag_values=fv)
    flags.DEFINE_multi_string("label", [],
                              "MODEL=LABEL:VERSION, e.g. classifier=stable:4; the version is "
                              "loaded and answers /labels/LABEL.", flag_values=fv)


def _split(setting, flag, value_form):
    name, _, value = setting.partition("=")
    if not name or not value:
        raise ServingConfigError(f"--{flag}={setting}: expected MODEL={value_form}")
    return name, value


def _versions(text, setting, flag):
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ServingConfigError(f"--{flag}={setting}: versions are integers") from None


def run(fv):
    pins, labels = {}, {}
    for setting in fv.pin:
        name, value = _split(setting, "pin", "VERSION")
        pins.setdefault(name, []).extend(_versions(value, setting, "pin"))
    for setting in fv.label:
        name, value = _split(setting, "label", "LABEL:VERSION")
        label, _, version = value.partition(":")
        labels.setdefault(name, {})[label] = _versions(version, setting, "label")[0]
    models = find_models(fv.root)
    config = model_server_config(models, fv.serving_root, pins, labels)
    for path in write_serving_config(fv.root, config):
        print(f"wrote {path}")
    for name, versions in models.items():
        chosen = pins.get(name) or sorted(set(labels.get(name, {}).values())) or versions[-1:]
        print(f"{name}: versions {versions}, serving {chosen}")


if __name__ == "__main__":
    common.main("serving_config", define_flags, run)
