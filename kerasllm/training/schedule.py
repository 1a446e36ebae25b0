"""The learning-rate schedule of every training run: linear warmup, then linear or
cosine decay (TrainConfig's learning_rate, warmup_steps, decay and
end_learning_rate_fraction; optimizer.create_optimizer builds it)."""
import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerasllm")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then linear or cosine
    decay to `peak * end_fraction` at `total_steps`."""

    def __init__(self, peak, warmup_steps, total_steps, decay="linear", end_fraction=0.0):
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.decay = decay
        self.end_fraction = end_fraction

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = ops.cast(max(self.warmup_steps, 1), "float32")
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = ops.clip((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        if self.decay == "cosine":
            shape = 0.5 * (1.0 + ops.cos(math.pi * progress))
        else:
            shape = 1.0 - progress
        decayed = self.peak * (self.end_fraction + (1.0 - self.end_fraction) * shape)
        if self.warmup_steps == 0:
            return decayed
        return ops.where(step < self.warmup_steps, self.peak * step / warmup, decayed)

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "total_steps": self.total_steps, "decay": self.decay,
                "end_fraction": self.end_fraction}
