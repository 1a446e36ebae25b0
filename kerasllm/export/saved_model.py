"""Writes a model and its tokenizer as a versioned, checked SavedModel."""
import json
import os
import subprocess
import sys

import keras

from kerasllm.export import warmup
from kerasllm.export.errors import ExportError
from kerasllm.export.versioned import READABLE, next_version, write_versioned
from kerasllm.serving.batching import PER_VERSION_FILE, Batching

METADATA_FILE = os.path.join("assets.extra", "kerasllm.json")


def run_serving_check(path):
    """Runs `python -m kerasllm.export.check` on `path` in a fresh process.

    A subprocess because the check disables XLA compilation process-wide, as TF
    Serving does, which must not leak into a training process."""
    result = subprocess.run([sys.executable, "-m", "kerasllm.export.check", path],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise ExportError(f"the exported model failed its serving check:\n"
                          f"{(result.stderr or result.stdout).strip()[-3000:]}")
    return result.stdout


def export_saved_model(export_root, signatures, resources, version=None, metadata=None,
                       check=True, warmup_inputs=None, batching=Batching(),
                       file_mode=READABLE):
    """Exports `signatures` ({name: tf.function with an input signature}) as
    `<export_root>/<version>/` (default version: the next free integer).

    `resources` are the models, layers and tokenizers the functions use; the
    tokenizers are tracked so their lookup tables and files are saved, and the
    variables the functions use are saved once each. `metadata` (a JSON-able
    dict) goes to assets.extra/kerasllm.json, which TF Serving ignores. Warmup
    requests for every signature go to assets.extra/tf_serving_warmup_requests
    (see kerasllm.export.warmup): sample texts for string inputs, and for any
    other input the values `warmup_inputs` ({signature: {input: values}}) gives.
    The version's own batching parameters (`batching`, see
    kerasllm.serving.batching) go to assets.extra/batching_params.pbtxt.
    With `check`, the written model must pass `kerasllm.export.check` (which
    replays the warmup requests too) before it is renamed into place. Files get
    `file_mode` (default: readable by everyone, directories 0o755, so a TF Serving
    running as another user can load it; None keeps the process's umask and a
    version directory only its owner reads, see versioned.write_versioned).
    Returns the final path.
    """
    if "serving_default" not in signatures:
        raise ExportError("a SavedModel for TF Serving needs a serving_default signature")
    version = next_version(export_root) if version is None else version
    warmup_inputs = warmup_inputs or {}
    logs = warmup.predict_logs(
        os.path.basename(os.path.normpath(export_root)),
        {name: warmup_inputs.get(name) or warmup.sample_inputs(function)
         for name, function in signatures.items()}, batching.allowed_batch_sizes)

    def write(path):
        archive = keras.export.ExportArchive()
        for resource in resources:
            # A tracked Keras layer's variables are saved twice (Keras 3.15): once as
            # the keras.Variables `track` lists, once as the tf.Variables the
            # endpoints capture, each its own VarHandleOp in the served graph. The
            # endpoints' own are all a server needs: tokenizers alone are tracked.
            if not isinstance(resource, keras.layers.Layer):
                archive.track(resource)
        for name, function in signatures.items():
            archive.add_endpoint(name, function)
        archive.write_out(path, verbose=False)
        warmup.write_warmup_requests(path, logs)
        with open(os.path.join(path, PER_VERSION_FILE), "w") as f:
            f.write(batching.to_text())
        if metadata is not None:
            os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
            with open(os.path.join(path, METADATA_FILE), "w") as f:
                json.dump(metadata, f, indent=2, sort_keys=True)

    return write_versioned(export_root, version, write,
                           run_serving_check if check else (lambda path: None), file_mode)
