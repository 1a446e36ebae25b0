"""kerasllm: readable Keras 3 transformer language models for tf.distribute and TF Serving."""
import os

# Keras picks its backend at first import; kerasllm is TensorFlow-only (tf.distribute,
# tensorflow-text, SavedModel), so pin it before anything imports keras.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ["KERAS_BACKEND"] != "tensorflow":
    raise ImportError(
        f"kerasllm needs KERAS_BACKEND=tensorflow, found {os.environ['KERAS_BACKEND']!r}; "
        "unset it or set it to 'tensorflow'."
    )

__version__ = "0.1.0"
