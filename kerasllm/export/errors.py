"""Errors raised while writing or checking a SavedModel."""


class ExportError(RuntimeError):
    """An export could not be written, or the written model failed its check."""
