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

# Exported graphs tokenize with tensorflow-text's ops; importing it registers them,
# so tf.saved_model.load works on any kerasllm export once kerasllm is imported.
import tensorflow_text  # noqa: E402,F401

__version__ = "0.1.0"


def set_random_seed(seed):
    """Seeds Python, NumPy, Keras and TensorFlow like keras.utils.set_random_seed,
    but keeps the tokenizers already built alive (that one clears TensorFlow's
    kernel cache, and SentencePiece tokenizers with it): see
    kerasllm.training.seeding."""
    from kerasllm.training.seeding import set_global_seed
    set_global_seed(seed)
