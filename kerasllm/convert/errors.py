"""Exceptions raised by kerasllm.convert for checkpoints that cannot be converted."""


class ConversionError(ValueError):
    """A checkpoint directory cannot become a kerasllm model; the message says why."""
