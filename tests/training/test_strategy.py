"""Strategy creation and its errors (the distributed runs are in test_distributed)."""
import socket

import pytest
import tensorflow as tf

from kerasllm.training.errors import StrategyError
from kerasllm.training.strategy import create_strategy, is_chief


def test_one_device_strategy_is_chief():
    strategy = create_strategy("one_device")
    assert isinstance(strategy, tf.distribute.OneDeviceStrategy)
    assert strategy.num_replicas_in_sync == 1 and is_chief(strategy)


def test_unknown_name_lists_the_choices():
    with pytest.raises(StrategyError, match="unknown strategy 'mirror'.*one_device, mirrored, "
                                            "multi_worker_mirrored, tpu"):
        create_strategy("mirror")


def test_tpu_needs_an_address():
    with pytest.raises(StrategyError, match="needs --tpu"):
        create_strategy("tpu")


def test_unreachable_tpu_fails_at_once():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on `port` any more: TensorFlow alone would retry forever.
    with pytest.raises(StrategyError, match=f"cannot reach TPU .*127.0.0.1:{port}"):
        create_strategy("tpu", tpu=f"grpc://127.0.0.1:{port}")


def test_multi_worker_with_broken_tf_config(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(StrategyError, match="TF_CONFIG"):
        create_strategy("multi_worker_mirrored")


def test_mirrored_without_a_gpu_says_it_trains_on_the_cpu(caplog):
    assert not tf.config.list_logical_devices("GPU")  # the machine these tests run on
    strategy = create_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 1
    warnings = [r.getMessage() for r in caplog.records if "found no GPU" in r.getMessage()]
    assert warnings == ["--strategy=mirrored found no GPU: training runs as one replica on "
                        "the CPU, as --strategy=one_device would"]
