"""Exceptions raised by kerasllm.convert for checkpoints that cannot be converted."""
from kerasllm.errors import KerasLLMError


class ConversionError(KerasLLMError, ValueError):
    """A checkpoint cannot become a kerasllm model; the message says why."""
