"""The loop under real tf.distribute strategies, each run in fresh processes."""
import json
import os
import subprocess
import sys

import pytest

from tests.ports import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(strategy, model_dir, cpus=1, tf_config=None):
    env = dict(os.environ, PYTHONPATH=ROOT)
    if tf_config:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.training.distributed_run", strategy, str(model_dir),
         str(cpus)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def finish(process):
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_mirrored_over_two_devices_matches_one_device(tmp_path):
    processes = [start("one_device", tmp_path / "single"),
                 start("mirrored", tmp_path / "mirrored", cpus=2)]
    single, mirrored = [finish(process) for process in processes]
    assert mirrored["replicas"] == 2
    assert mirrored["last_loss"] < 0.7 * mirrored["first_loss"]
    # Two replicas of half a batch each must make the same updates as one replica.
    assert mirrored["last_loss"] == pytest.approx(single["last_loss"], rel=1e-2)
    assert mirrored["weight_sum"] == pytest.approx(single["weight_sum"], rel=1e-3)


# About 25 s on 2 idle cores, 60 s on busy ones: two TensorFlow processes that
# trace the step and synchronise every all-reduce over gRPC.
@pytest.mark.slow
def test_multi_worker_mirrored_with_two_worker_processes(tmp_path):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    workers = [start("multi_worker_mirrored", tmp_path / "model",
                     tf_config={"cluster": cluster, "task": {"type": "worker", "index": i}})
               for i in range(2)]
    results = [finish(worker) for worker in workers]
    assert all(r["replicas"] == 2 for r in results)
    assert results[0]["weight_sum"] == pytest.approx(results[1]["weight_sum"], rel=1e-6)
    assert results[0]["last_loss"] < 0.7 * results[0]["first_loss"]
    assert os.path.exists(tmp_path / "model" / "checkpoint")
    assert not [n for n in os.listdir(tmp_path / "model") if n.startswith(".worker")]
