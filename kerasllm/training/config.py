"""What a training run needs besides the model and the data."""
import dataclasses

from kerasllm.training.errors import TrainingError

DECAYS = ("linear", "cosine")
# Warmup, unless set: this share of the run's steps (BERT warmed up for 1-10%).
DEFAULT_WARMUP_FRACTION = 0.1
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation and bookkeeping settings shared by every model family.

    `warmup_steps` None warms up over the first DEFAULT_WARMUP_FRACTION of
    `train_steps` (see `num_warmup_steps`). `clip_norm` 0 disables clipping.
    `layer_decay` < 1 gives layer-wise learning rates: the backbone's top gets
    `learning_rate`, each layer below it `layer_decay` times the rate of the
    layer above (see optimizer.layer_decay_scale).
    `ema_momentum` > 0 keeps an exponential moving average of the weights (see
    optimizer.averaged_weights): what is evaluated, returned and exported.
    `steps_per_loop` optimizer steps run per tf.function call (fewer Python
    round trips); progress lines and checkpoints still fall exactly on their steps.
    `eval_every` steps pass between calls of train's `on_evaluate` hook (None:
    at every checkpoint); it is called at the last step too.
    `deterministic` turns on TensorFlow's op determinism for the process, so that
    the same run (or one resumed after a crash) gives bit-identical weights.

    `global_batch_size` counts examples per optimizer step summed over replicas
    and accumulation micro-batches: each replica sees
    global_batch_size / (replicas * grad_accum_steps) examples at a time.
    """

    model_dir: str
    train_steps: int
    global_batch_size: int
    learning_rate: float = 1e-4
    warmup_steps: int | None = None
    decay: str = "linear"
    end_learning_rate_fraction: float = 0.0
    weight_decay: float = 0.01
    layer_decay: float = 1.0
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.999
    adam_epsilon: float = 1e-6
    clip_norm: float = 1.0
    ema_momentum: float = 0.0
    grad_accum_steps: int = 1
    mixed_precision: str = "float32"
    jit_compile: bool = False
    steps_per_loop: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    log_every: int = 50
    eval_every: int | None = None
    seed: int = 0
    deterministic: bool = False

    def __post_init__(self):
        problems = []
        if not self.model_dir:
            problems.append("model_dir is empty; pass the directory for checkpoints and logs")
        for name in ("train_steps", "global_batch_size", "grad_accum_steps", "steps_per_loop",
                     "checkpoint_every", "keep_checkpoints", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_every is not None and self.eval_every < 1:
            problems.append(f"eval_every must be >= 1, got {self.eval_every}")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.end_learning_rate_fraction <= 1:
            problems.append("end_learning_rate_fraction must be in [0, 1], "
                            f"got {self.end_learning_rate_fraction}")
        for name in ("weight_decay", "clip_norm", "adam_epsilon"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.layer_decay <= 1:
            problems.append(f"layer_decay must be in (0, 1], got {self.layer_decay}")
        for name in ("adam_beta_1", "adam_beta_2", "ema_momentum"):
            if not 0 <= getattr(self, name) < 1:
                problems.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.warmup_steps is not None and not 0 <= self.warmup_steps <= self.train_steps:
            problems.append(f"warmup_steps must be in [0, train_steps={self.train_steps}], "
                            f"got {self.warmup_steps}")
        if self.decay not in DECAYS:
            problems.append(f"decay must be one of {DECAYS}, got {self.decay!r}")
        if self.mixed_precision not in PRECISIONS:
            problems.append(f"mixed_precision must be one of {PRECISIONS}, "
                            f"got {self.mixed_precision!r}")
        if self.global_batch_size % self.grad_accum_steps:
            problems.append(f"batch size {self.global_batch_size} is not divisible by "
                            f"grad_accum_steps {self.grad_accum_steps}")
        if problems:
            raise TrainingError("; ".join(problems))

    @property
    def num_warmup_steps(self):
        """`warmup_steps`, or its default share of `train_steps`."""
        if self.warmup_steps is None:
            return int(DEFAULT_WARMUP_FRACTION * self.train_steps)
        return self.warmup_steps

    @property
    def evaluation_interval(self):
        """Steps between evaluations: `eval_every`, or `checkpoint_every`."""
        return self.eval_every or self.checkpoint_every

    @property
    def micro_batch_size(self):
        """Examples per accumulation micro-batch, summed over replicas: the global
        batch size the dataset function must produce."""
        return self.global_batch_size // self.grad_accum_steps

    def replace(self, **changes):
        """A copy with `changes`, validated again."""
        return dataclasses.replace(self, **changes)
