"""Errors raised for generation settings that cannot work."""
from kerasllm.errors import KerasLLMError


class GenerationError(KerasLLMError, ValueError):
    """A decoding setting (a length, a beam count) is out of range."""
