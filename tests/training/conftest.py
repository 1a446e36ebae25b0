import pytest

from tests.training.helpers import run


@pytest.fixture(scope="session")
def baseline(tmp_path_factory):
    """(model_dir, result, logged) of one plain 30-step run with checkpoints at
    10, 20 and 30, shared by the tests that only read it or copy its model_dir."""
    model_dir = tmp_path_factory.mktemp("baseline")
    result, logged = run(model_dir)
    return model_dir, result, logged
