"""Atomic, versioned SavedModel directories in TF Serving's layout: <root>/<version>/,
readable by everyone unless asked otherwise (TF Serving often runs as another user,
e.g. in a container)."""
import os
import shutil
import tempfile

from kerasllm.export.errors import ExportError

# rw-r--r--: the server only reads an export, whichever user it runs as.
READABLE = 0o644


def existing_versions(export_root):
    """The integer versions already under `export_root`, ascending."""
    if not os.path.isdir(export_root):
        return []
    return sorted(int(name) for name in os.listdir(export_root) if name.isdigit())


def next_version(export_root):
    """One more than the newest version, so TF Serving picks the new model up."""
    versions = existing_versions(export_root)
    return versions[-1] + 1 if versions else 1


def _set_modes(directory, file_mode):
    """Gives every file under `directory` `file_mode` and every directory, itself
    included, the same with x wherever it has r (0o644 -> 0o755, 0o600 -> 0o700)."""
    directory_mode = file_mode | (file_mode & 0o444) >> 2
    for parent, _, files in os.walk(directory):
        os.chmod(parent, directory_mode)
        for name in files:
            os.chmod(os.path.join(parent, name), file_mode)


def write_versioned(export_root, version, write, validate, file_mode=READABLE):
    """Writes a SavedModel as `<export_root>/<version>` without ever exposing a
    partial one: `write(tmp_dir)` fills a hidden temporary directory beside the
    target, `validate(tmp_dir)` must pass, then one rename publishes it.

    TF Serving polls the root and loads any numeric directory it sees, so the
    temporary name starts with a dot and is not a number. An existing version is
    never replaced. Before the rename every file gets `file_mode` and every
    directory the same with x where it has r (see _set_modes; the temporary
    directory starts as 0o700); None leaves them as written. Returns the final
    path.
    """
    version = int(version)
    if version <= 0:
        raise ExportError(f"export version must be a positive integer, got {version}")
    final_path = os.path.join(export_root, str(version))
    if os.path.exists(final_path):
        raise ExportError(
            f"export version {final_path} already exists; pass a new --export_version "
            f"(next free: {next_version(export_root)}) or remove the old one yourself")
    try:
        os.makedirs(export_root, exist_ok=True)
        tmp_dir = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_root)
    except OSError as error:
        raise ExportError(f"cannot write to export directory {export_root}: {error}") from None
    try:
        write(tmp_dir)
        validate(tmp_dir)
        if file_mode is not None:
            _set_modes(tmp_dir, file_mode)
        os.rename(tmp_dir, final_path)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return final_path
