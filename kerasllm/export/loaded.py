"""An exported SavedModel in Python: its signatures called with strings and lists,
answering with Python strings and NumPy arrays.

    model = kerasllm.export.load("saved_models/llama_tiny")   # the newest version
    model.signatures                  # {"generate": {"prompt": tf.string}, ...}
    model.generate(prompt="To be, or")["text"]                 # 'not to be ...'
    model.generate_with_options(prompt=["a", "b"], temperature=[0.0, 0.8], ...)

It is what TF Serving runs (the same graph, tensorflow-text's ops registered by
importing kerasllm), called in-process: for checking an export, notebooks and
batch jobs. One string (not a list) per input gives one row and unbatched outputs.
"""
import os

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the tokenizer ops the graphs use)

from kerasllm.errors import KerasLLMError
from kerasllm.export.versioned import existing_versions
from kerasllm.raw_text import python_value, unbatched


class ExportNotFoundError(KerasLLMError, FileNotFoundError):
    """A path that is neither a SavedModel nor an export root holding versions."""


def version_path(path):
    """`path` if it is a SavedModel, else its newest numbered version."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = existing_versions(path) if os.path.isdir(path) else []
    if not versions:
        raise ExportNotFoundError(f"{path} is neither a SavedModel (no saved_model.pb) nor "
                                  "an export root with numbered versions")
    return os.path.join(path, str(max(versions)))


class LoadedExport:
    """A loaded SavedModel whose signatures are methods taking Python values."""

    def __init__(self, path):
        self.path = version_path(os.fspath(path))
        self._saved = tf.saved_model.load(self.path)
        self.signatures = {
            name: {key: spec.dtype for key, spec in
                   function.structured_input_signature[1].items()}
            for name, function in self._saved.signatures.items()}

    def __dir__(self):
        return [*super().__dir__(), *self.signatures]

    def __getattr__(self, name):
        if name.startswith("_") or name not in self.signatures:
            raise AttributeError(f"{self.path} has no signature {name!r}; its signatures: "
                                 f"{', '.join(sorted(self.signatures))}")
        return lambda **inputs: self.call(name, **inputs)

    def call(self, name, **inputs):
        """Runs signature `name` on `inputs` (each a value or a list, one row each);
        returns {output: Python strings or NumPy array}."""
        expected = self.signatures[name]
        if set(inputs) != set(expected):
            raise KerasLLMError(f"{name} takes {', '.join(sorted(expected))}; got "
                                f"{', '.join(sorted(inputs)) or 'nothing'}")
        single = all(np.ndim(value) == 0 for value in inputs.values())
        tensors = {key: tf.constant(np.reshape(np.asarray(value, dtype=object if dtype ==
                                                          tf.string else None), [-1]),
                                    dtype=dtype)
                   for key, (value, dtype) in ((k, (v, expected[k]))
                                               for k, v in inputs.items())}
        outputs = self._saved.signatures[name](**tensors)
        return unbatched({key: python_value(value) for key, value in outputs.items()},
                         single)


def load(path):
    """The export at `path` (a version directory, or an export root: its newest
    version) as a LoadedExport."""
    return LoadedExport(path)
