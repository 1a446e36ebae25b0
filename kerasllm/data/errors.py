"""Exceptions raised by kerasllm.data for bad input (files, vocabularies, settings)."""


class DataError(ValueError):
    """Input data cannot be used as given; the message says what to change."""


class CorpusError(DataError):
    """A text corpus is missing, unreadable or empty."""


class VocabError(DataError):
    """A WordPiece vocabulary file is missing, malformed or lacks special tokens."""
