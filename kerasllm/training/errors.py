"""Errors that stop training with one clear line."""


class TrainingError(RuntimeError):
    """A training run cannot start or continue."""


class StrategyError(TrainingError):
    """The requested tf.distribute strategy cannot be created here."""


class CheckpointError(TrainingError):
    """The checkpoint in model_dir cannot be restored into this model."""
