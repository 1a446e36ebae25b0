"""Files and directories that appear whole or not at all: written under a hidden
temporary name in the same directory, then renamed, so a reader (a resumed run, TF
Serving, llama.cpp, another process) never sees a partial one."""
import contextlib
import os
import shutil
import tempfile


def write_atomically(path, data):
    """Writes `data` (str, as UTF-8 with "\\n" line ends, or bytes) to `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    descriptor, temporary_path = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(path)}-")
    try:
        if isinstance(data, bytes):
            with os.fdopen(descriptor, "wb") as f:
                f.write(data)
        else:
            with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as f:
                f.write(data)
        os.replace(temporary_path, path)
    except BaseException:
        os.unlink(temporary_path)
        raise


@contextlib.contextmanager
def atomic_output(path, overwrite=False):
    """Yields a temporary path beside `path` for the body to write a file or a directory
    at; when the body returns, that path is renamed to `path` (replacing what is there
    when `overwrite`); when it raises, whatever it wrote is removed and `path` is left
    as it was.

    Raises:
      FileExistsError: `path` exists and not `overwrite` (checked before the body runs).
    """
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite to replace it")
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}-", dir=parent)
    output = os.path.join(scratch, os.path.basename(path))
    try:
        yield output
        if os.path.isdir(path) and not os.path.islink(path):
            # A directory cannot be replaced by a rename: move the old one aside first.
            os.rename(path, os.path.join(scratch, "replaced"))
        os.replace(output, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
