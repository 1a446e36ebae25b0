import keras
import pytest


@pytest.fixture(autouse=True)
def restore_dtype_policy():
    """Tests that build under a mixed-precision policy must not leak it to the next."""
    yield
    keras.config.set_dtype_policy("float32")
