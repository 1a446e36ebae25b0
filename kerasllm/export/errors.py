"""Errors raised while writing or checking a SavedModel."""
from kerasllm.errors import KerasLLMError


class ExportError(KerasLLMError, RuntimeError):
    """An export could not be written, or the written model failed its check."""
