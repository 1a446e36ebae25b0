"""Errors raised by kerasllm.data for bad corpora and example files."""
from kerasllm.errors import DataError


class CorpusError(DataError):
    """A text corpus is missing, unreadable or empty."""
