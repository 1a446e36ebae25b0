"""TF Serving's config files for an export root, read back with the server's protos."""
import os

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from kerasllm.serving.batching import Batching, parse_batching
from kerasllm.serving.model_config import (ServingConfigError, find_models,
                                           model_server_config)
from tests.trainers.trainer_runs import Trainer

trainer = Trainer("serving_config")


@pytest.fixture
def root(tmp_path):
    """Two models with a few versions, a half-written export and a stray file."""
    for name, versions in {"minilm": [1, 2, 3], "classifier": [4, 5]}.items():
        for version in versions:
            (tmp_path / name / str(version)).mkdir(parents=True)
            (tmp_path / name / str(version) / "saved_model.pb").write_bytes(b"")
    (tmp_path / "minilm" / ".tmp-4-abc").mkdir()  # an export still being written
    (tmp_path / "classifier" / "6").mkdir()  # no saved_model.pb: not a version
    (tmp_path / "notes.txt").write_text("x")
    return tmp_path


def read_models_config(root):
    return text_format.Parse((root / "models.config").read_text(),
                             model_server_config_pb2.ModelServerConfig())


def test_finds_each_models_complete_versions(root):
    assert find_models(str(root)) == {"classifier": [4, 5], "minilm": [1, 2, 3]}


def test_latest_by_default_pins_and_labels(root):
    config = model_server_config(find_models(str(root)), "/models",
                                 pins={"minilm": [2]}, labels={"classifier": {"stable": 4,
                                                                             "canary": 5}})
    entries = {c.name: c for c in config.model_config_list.config}
    assert entries["minilm"].base_path == "/models/minilm"
    assert list(entries["minilm"].model_version_policy.specific.versions) == [2]
    assert list(entries["classifier"].model_version_policy.specific.versions) == [4, 5]
    assert dict(entries["classifier"].version_labels) == {"stable": 4, "canary": 5}
    plain = model_server_config(find_models(str(root)))
    assert all(c.model_version_policy.latest.num_versions == 1
               and c.model_platform == "tensorflow" for c in plain.model_config_list.config)


@pytest.mark.parametrize("pins, labels, message", [
    ({"bert": [1]}, {}, "pinned model 'bert' is not under the export root"),
    ({"minilm": [9]}, {}, r"pinned version\(s\) \[9\] of 'minilm' do not exist"),
    ({}, {"classifier": {"stable": 6}}, r"labelled version\(s\) \[6\]")])
def test_unknown_models_and_versions_are_named(root, pins, labels, message):
    with pytest.raises(ServingConfigError, match=message):
        model_server_config(find_models(str(root)), pins=pins, labels=labels)


def test_the_trainer_writes_both_files(root):
    output = trainer.run(f"--root={root}", "--label=classifier=stable:4",
                         "--label=classifier=canary:5", "--serving_root=/srv/models")
    assert "classifier: versions [4, 5], serving [4, 5]" in output
    assert "minilm: versions [1, 2, 3], serving [3]" in output
    entries = {c.name: c for c in read_models_config(root).model_config_list.config}
    assert entries["classifier"].base_path == "/srv/models/classifier"
    assert dict(entries["classifier"].version_labels) == {"stable": 4, "canary": 5}
    batching = parse_batching((root / "batching.config").read_text())
    assert batching.max_batch_size.value == Batching().max_batch_size
    assert list(batching.allowed_batch_sizes) == list(Batching().allowed_batch_sizes)
    assert not os.path.exists(root / "models.config.tmp")


@pytest.mark.parametrize("flag, message", [
    ("--pin=minilm", "--pin=minilm: expected MODEL=VERSION"),
    ("--pin=minilm=two", "versions are integers"),
    ("--root=/nonexistent", "/nonexistent is not a directory")])
def test_bad_settings_are_named(root, flag, message):
    args = [flag] if flag.startswith("--root") else [f"--root={root}", flag]
    assert message in trainer.error(*args)
