"""The tf.distribute strategy a run uses, chosen by name."""
import socket

import tensorflow as tf
from absl import logging

from kerasllm.training.errors import StrategyError

STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")


def create_strategy(name, tpu=None):
    """A strategy by name: one_device (first GPU, else CPU), mirrored (all local
    GPUs, else CPU), multi_worker_mirrored (cluster from TF_CONFIG), tpu (at the
    `tpu` address: a name, grpc:// address, or "local")."""
    if name == "one_device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        if not tf.config.list_logical_devices("GPU"):
            logging.warning("--strategy=mirrored found no GPU: training runs as one replica "
                            "on the CPU, as --strategy=one_device would")
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except ValueError as error:  # also json.JSONDecodeError
            raise StrategyError(f"multi_worker_mirrored cannot read the cluster from "
                                f"TF_CONFIG: {error}; set TF_CONFIG to the JSON cluster "
                                "spec and this worker's task") from None
    if name == "tpu":
        return _tpu_strategy(tpu)
    raise StrategyError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def _tpu_strategy(tpu):
    if not tpu:
        raise StrategyError("--strategy=tpu needs --tpu=<TPU name, grpc://host:port, "
                            "or 'local' on a TPU VM>")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        # Connecting to an address nobody listens on retries forever: probe it first.
        for address in _worker_addresses(resolver):
            _probe(address, tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, OSError, tf.errors.OpError) as error:
        raise StrategyError(f"cannot reach TPU {tpu!r}: {error}; check --tpu and that the "
                            "TPU is running") from None
    return tf.distribute.TPUStrategy(resolver)


def _worker_addresses(resolver):
    return [address for addresses in resolver.cluster_spec().as_dict().values()
            for address in (addresses.values() if isinstance(addresses, dict) else addresses)]


def _probe(address, tpu, timeout_seconds=10):
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_seconds).close()
    except OSError as error:
        raise StrategyError(f"cannot reach TPU {tpu!r} at {address}: "
                            f"{error.strerror or error}; check --tpu and that the TPU is "
                            "running") from None


def is_chief(strategy):
    """True on the one worker that writes exports (every single-worker run)."""
    resolver = strategy.cluster_resolver
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())
