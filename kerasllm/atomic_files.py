"""Files that appear whole or not at all: written under a hidden temporary name in the
same directory, then renamed, so a reader (a resumed run, TF Serving, another
process) never sees a partial file."""
import os
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
