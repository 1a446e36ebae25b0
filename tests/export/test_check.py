"""The serving check must reject what TF Serving cannot run, in a fresh process."""
import os
import subprocess
import sys

import keras
import pytest
import tensorflow as tf

from kerasllm.export.check import op_report
from kerasllm.export.errors import ExportError
from kerasllm.export.versioned import next_version, write_versioned


def save_module(path, body, jit_compile=False):
    module = tf.Module()
    module.scale = tf.Variable(2.0)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")],
                 jit_compile=jit_compile)
    def serve(text):
        return {"length": body(module, tf.cast(tf.strings.length(text), tf.float32))}

    tf.saved_model.save(module, path, signatures={"serving_default": serve})
    return path


def run_check(path):
    return subprocess.run([sys.executable, "-m", "kerasllm.export.check", path],
                          capture_output=True, text=True)


def test_plain_model_passes(tmp_path):
    result = run_check(save_module(str(tmp_path / "m"), lambda m, x: x * m.scale))
    assert result.returncode == 0, result.stderr
    assert "PASSED" in result.stdout
    assert "signature serving_default: ok" in result.stdout


def test_jit_compiled_function_is_rejected(tmp_path):
    result = run_check(save_module(str(tmp_path / "m"), lambda m, x: x * m.scale,
                                   jit_compile=True))
    assert result.returncode == 1
    assert "_XlaMustCompile" in result.stderr


def test_xla_op_from_keras_slice_update_is_rejected(tmp_path):
    def body(module, x):
        return keras.ops.slice_update(x, [0], tf.ones([1])) * module.scale

    result = run_check(save_module(str(tmp_path / "m"), body))
    assert result.returncode == 1
    assert "XlaDynamicUpdateSlice" in result.stderr


def test_python_op_is_rejected(tmp_path):
    path = save_module(str(tmp_path / "m"), lambda m, x: x * m.scale)
    from tensorflow.core.protobuf import saved_model_pb2
    model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        model.ParseFromString(f.read())
    meta_graph = model.meta_graphs[0]
    meta_graph.graph_def.node.add(name="py", op="EagerPyFunc")
    _, problems = op_report(meta_graph)
    assert any("EagerPyFunc" in p and "Python" in p for p in problems)


def test_missing_model_is_named(tmp_path):
    result = run_check(str(tmp_path / "nothing"))
    assert result.returncode == 1
    assert "no SavedModel at" in result.stderr


def test_versioned_write_is_atomic_and_never_replaces(tmp_path):
    root = str(tmp_path / "exports")

    def write(path):
        with open(os.path.join(path, "saved_model.pb"), "w") as f:
            f.write("x")

    def failing_validation(path):
        raise ExportError("validation failed")

    assert write_versioned(root, 1, write, lambda p: None) == os.path.join(root, "1")
    with pytest.raises(ExportError, match="already exists.*next free: 2"):
        write_versioned(root, 1, write, lambda p: None)
    with pytest.raises(ExportError, match="validation failed"):
        write_versioned(root, 2, write, failing_validation)
    assert sorted(os.listdir(root)) == ["1"]  # no half-written version, no temp dir left
    assert next_version(root) == 2


def test_versions_are_readable_by_everyone_unless_asked_otherwise(tmp_path):
    """TF Serving in a container runs as another user: a version must not be 0700
    (the temporary directory's mode) even under a strict umask."""
    def write(path):
        os.makedirs(os.path.join(path, "variables"))
        for name in ("saved_model.pb", os.path.join("variables", "variables.index")):
            with open(os.path.join(path, name), "w") as f:
                f.write("x")

    def modes(path):
        return {os.path.relpath(os.path.join(parent, name), path) or ".":
                os.stat(os.path.join(parent, name)).st_mode & 0o777
                for parent, directories, files in os.walk(path)
                for name in ["", *directories, *files]}

    previous = os.umask(0o077)
    try:
        readable = write_versioned(str(tmp_path), 1, write, lambda p: None)
        private = write_versioned(str(tmp_path), 2, write, lambda p: None, file_mode=None)
        group = write_versioned(str(tmp_path), 3, write, lambda p: None, file_mode=0o640)
    finally:
        os.umask(previous)
    assert modes(readable) == {".": 0o755, "variables": 0o755, "saved_model.pb": 0o644,
                               "variables/variables.index": 0o644}
    assert modes(private)["."] == 0o700 and modes(private)["saved_model.pb"] == 0o600
    assert set(modes(group).values()) == {0o750, 0o640}
