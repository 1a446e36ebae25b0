"""Errors that stop training with one clear line (checkpoint problems raise
kerasllm.errors.CheckpointError)."""
from kerasllm.errors import KerasLLMError


class TrainingError(KerasLLMError, RuntimeError):
    """A training run cannot start or continue."""


class StrategyError(TrainingError):
    """The requested tf.distribute strategy cannot be created here."""
