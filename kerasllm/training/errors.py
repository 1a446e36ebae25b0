"""Errors that stop training with one clear line (checkpoint problems raise
kerasllm.errors.CheckpointError)."""
from kerasllm.errors import KerasLLMError


class TrainingError(KerasLLMError, RuntimeError):
    """A training run cannot start or continue."""


class StrategyError(TrainingError):
    """The requested tf.distribute strategy cannot be created here."""


def first_line(error):
    """The first line of an exception's message (TensorFlow's run to pages), at most
    300 characters, for a one-line error that quotes it."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return message.strip().splitlines()[0][:300]
