"""Reading example files: UTF-8 text, a format chosen by extension, errors by line.

Each reader (labeled_text, tagged_text, qa_examples) raises its own subclass of
ExampleFileError, so a caller can tell which kind of file is bad. The helpers
here take that class and raise it as "path:line: message", the form terminals
and editors turn into a link to the line.
"""
import json
import os
from typing import Callable, NamedTuple

from kerasllm.errors import DataError


class ExampleFileError(DataError):
    """An example file is unreadable or has a malformed line."""


def line_error(error_type, path, line, message):
    """error_type("path:line: message"), for the caller to raise."""
    return error_type(f"{path}:{line}: {message}")


def file_format(path, formats, error_type):
    """The lower-case extension of `path`, which must be one of `formats`."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in formats:
        raise error_type(f"{path}: unknown format {extension!r}; use one of "
                         f"{', '.join(formats)}")
    return extension


def read_records(path, parse, error_type):
    """Yields what `parse(f)` yields for `path` opened as UTF-8 text.

    The file is opened with newline="", so `parse` sees line breaks as written
    (the csv module needs that for quoted line breaks and CRLF). A file that
    cannot be opened or is not UTF-8 raises error_type naming `path`.
    """
    try:
        with open(path, encoding="utf-8", newline="") as f:
            yield from parse(f)
    except OSError as error:
        raise error_type(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise error_type(f"{path} is not UTF-8 text ({error.reason})") from None


def numbered_lines(f):
    """(line number from 1, the line without its line break) for every line of `f`."""
    for number, line in enumerate(f, start=1):
        yield number, line.rstrip("\r\n")


def jsonl_objects(path, f, error_type):
    """(line, dict) for every line of a JSON Lines file; an empty line, bad JSON or
    a value other than an object raises error_type."""
    for line, text in enumerate(f, start=1):
        if not text.strip():
            raise line_error(error_type, path, line, "empty line")
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise line_error(error_type, path, line,
                             f"bad JSON: {error.msg} at column {error.colno}") from None
        if not isinstance(record, dict):
            raise line_error(error_type, path, line,
                             f"expected a JSON object, got {type(record).__name__}")
        yield line, record


def label_lookup(path, label_names, error_type):
    """A function (line, label) -> the label's index in `label_names`, raising
    error_type naming the line for a label outside them."""
    ids = {name: i for i, name in enumerate(label_names)}

    def label_id(line, label):
        if label not in ids:
            raise line_error(error_type, path, line, f"unknown label {label!r}; known "
                             f"labels: {', '.join(label_names)}")
        return ids[label]

    return label_id


class FieldKind(NamedTuple):
    """What a JSON field must hold: `description` for the error, `accepts(value)`."""

    description: str
    accepts: Callable[[object], bool]


STRING = FieldKind("a string", lambda value: isinstance(value, str))
STRINGS = FieldKind("a list of strings", lambda value: isinstance(value, list) and all(
    isinstance(item, str) for item in value))
# bool is an int to Python, but `true` is no offset.
INTEGER = FieldKind("an integer", lambda value: isinstance(value, int)
                    and not isinstance(value, bool))
NUMBER = FieldKind("a number", lambda value: isinstance(value, (int, float))
                   and not isinstance(value, bool))


def check_fields(path, line, record, error_type, required, optional=None):
    """Raises error_type unless `record` has every field of `required` and every
    field of `required` and `optional` it has is of its kind ({name: FieldKind})."""
    missing = [name for name in required if name not in record]
    if missing:
        raise line_error(error_type, path, line, f"missing field(s) {', '.join(missing)}")
    for name, kind in {**required, **(optional or {})}.items():
        if name in record and not kind.accepts(record[name]):
            raise line_error(error_type, path, line, f"field {name!r} must be "
                             f"{kind.description}, got {type(record[name]).__name__}")
