"""AdamW with warmup + decay, global-norm clipping and float16 loss scaling."""
import math

import keras
from keras import ops

# LayerNorm scales/offsets and biases are not decayed (as in BERT and GPT-2).
NO_DECAY_NAMES = ["bias", "gamma", "beta"]


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


class PreReducedAdamW(keras.optimizers.AdamW):
    """AdamW for gradients the training loop has already summed across replicas.

    Keras' TF optimizer all-reduces gradients itself, but only after it has
    clipped them, so under several replicas `global_clipnorm` would clip each
    replica's partial gradient. The loop all-reduces first; this optimizer then
    clips the true global gradient and skips its own (second) reduction.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):
        return list(grads_and_vars)


def create_optimizer(config):
    """The optimizer for a TrainConfig (create it inside `strategy.scope()`)."""
    optimizer = PreReducedAdamW(
        learning_rate=WarmupDecay(config.learning_rate, config.warmup_steps,
                                  config.train_steps, config.decay,
                                  config.end_learning_rate_fraction),
        weight_decay=config.weight_decay, beta_1=config.adam_beta_1,
        beta_2=config.adam_beta_2, epsilon=config.adam_epsilon,
        global_clipnorm=config.clip_norm or None)
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    if config.mixed_precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
