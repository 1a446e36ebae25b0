"""The base of every error kerasllm raises for bad input, so a caller (a trainer's
entry point, say) catches one class and prints its message, which names the problem."""


class KerasLLMError(Exception):
    """A problem with the caller's settings, files or model; the message says what to change."""


class DataError(KerasLLMError, ValueError):
    """Input data (a corpus, a vocabulary, an example file, a setting for them) cannot be
    used as given."""


class CheckpointError(KerasLLMError, RuntimeError):
    """A checkpoint or model directory cannot be restored into this model."""


class ConfigError(KerasLLMError, ValueError):
    """A model setting (a size, a ratio, a weight) that no model can be built with."""
