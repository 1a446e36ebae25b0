import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import kerasllm  # noqa: E402,F401  (pins KERAS_BACKEND before keras is imported)
