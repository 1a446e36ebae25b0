"""LoRA for a whole model: which linear layers get adapters, freezing everything
else, and merging the adapters back into plain weights.

    backbone.enable_lora(rank=8)                  # query/key/value/output of attention
    backbone.enable_lora(8, targets="all")        # and every feed-forward layer
    backbone.enable_lora(8, targets="query,value")
    ...train: only the adapters (and norms, with train_norms) are trainable...
    backbone.merge_lora()                         # plain layers again, same outputs

Targets name layers by the last part of their path inside a block ("query", "key",
"value", "output" of attention; "intermediate", "output" or "gate", "up", "down" of
a feed-forward net; "feed_forward/output" to tell the two outputs apart), or one
of the groups "attention" and "all". The vocabulary table and projection stay
frozen (a tied table is also the input embedding).
"""
import dataclasses

import keras

from kerasllm.errors import KerasLLMError
from kerasllm.layers.attention import MultiHeadAttention
from kerasllm.layers.matmul_einsum_dense import MatmulEinsumDense
from kerasllm.layers.rms_norm import RMSNorm

ATTENTION, ALL = "attention", "all"
ATTENTION_PROJECTIONS = ("query_dense", "key_dense", "value_dense", "output_dense")


class LoraError(KerasLLMError, ValueError):
    """LoRA settings that fit no layer of the model."""


@dataclasses.dataclass(frozen=True)
class LoraSettings:
    """What enable_lora was given; recorded in checkpoints' run records and exports."""

    rank: int
    alpha: float
    dropout: float = 0.0
    targets: str = ATTENTION
    train_norms: bool = False

    def to_dict(self):
        return dataclasses.asdict(self)


def _linear_layers(model):
    """[(path, layer, is_attention)]: every MatmulEinsumDense of `model`."""
    attention = {id(getattr(layer, name)) for layer in model._flatten_layers()
                 if isinstance(layer, MultiHeadAttention) for name in ATTENTION_PROJECTIONS}
    return [(layer.path, layer, id(layer) in attention) for layer in model._flatten_layers()
            if isinstance(layer, MatmulEinsumDense)]


def target_layers(model, targets):
    """The MatmulEinsumDense layers of `model` that `targets` names (see the module
    docstring). Raises LoraError if it names none."""
    names = [name.strip().strip("/") for name in targets.split(",") if name.strip()]
    chosen = []
    for path, layer, is_attention in _linear_layers(model):
        if any(name == ALL or (name == ATTENTION and is_attention)
               or path.endswith("/" + name) for name in names):
            chosen.append(layer)
    if not chosen:
        known = sorted({path.rsplit("/", 1)[1] for path, _, _ in _linear_layers(model)})
        raise LoraError(f"LoRA targets {targets!r} name no layer of {model.name}; use "
                        f"{ATTENTION!r}, {ALL!r} or layer names among {', '.join(known)}")
    return chosen


def _norm_variables(model):
    """The scales and offsets of `model`'s normalisation layers."""
    return [variable for layer in model._flatten_layers()
            if isinstance(layer, (RMSNorm, keras.layers.LayerNormalization))
            for variable in layer.weights]


def check_lora(model, rank, targets=ATTENTION):
    """The layers enable_lora(model, rank, targets=targets) would adapt, changing
    nothing; LoraError where it would fail (see enable_lora)."""
    if lora_layers(model):
        raise LoraError(f"{model.name} has LoRA adapters already; merge_lora() first to "
                        "add new ones")
    if rank < 1:
        raise LoraError(f"LoRA rank must be >= 1, got {rank}")
    layers = target_layers(model, targets)
    for layer in layers:
        input_size, output_size = layer.matrix_shape
        if rank > min(input_size, output_size):
            raise LoraError(f"LoRA rank {rank} is larger than {layer.path} "
                            f"({input_size} x {output_size}); use at most "
                            f"{min(input_size, output_size)}")
    return layers


def enable_lora(model, rank, alpha=None, dropout=0.0, targets=ATTENTION, train_norms=False,
                keep_trainable=()):
    """Adds LowRankAdapters to the target layers of `model` (built) and freezes every
    other weight but `keep_trainable` (and norms, with `train_norms`). Returns
    LoraSettings.

    Raises:
      LoraError: LoRA is on already, no layer matches `targets`, or `rank` is
        not in 1 .. a target layer's narrower side.
    """
    layers = check_lora(model, rank, targets)
    kept = {id(variable) for variable in keep_trainable}
    trainable = [v for v in model.trainable_variables if id(v) not in kept]
    # Kept outside Keras' tracking: merge_lora makes these trainable again.
    object.__setattr__(model, "_trainable_before_lora", trainable)
    for variable in trainable:
        variable.trainable = False
    for layer in layers:
        layer.enable_lora(rank, lora_alpha=alpha, dropout=dropout)
    if train_norms:
        for variable in _norm_variables(model):
            variable.trainable = True
    return LoraSettings(rank=rank, alpha=float(alpha if alpha is not None else rank),
                        dropout=dropout, targets=targets, train_norms=train_norms)


def lora_layers(model):
    """The layers of `model` holding an adapter."""
    return [layer for _, layer, _ in _linear_layers(model) if layer.adapter is not None]


def merge_lora(model):
    """Folds every adapter of `model` into its layer's kernel (see
    MatmulEinsumDense.merge_lora) and makes the weights enable_lora froze trainable
    again."""
    for layer in lora_layers(model):
        layer.merge_lora()
    for variable in getattr(model, "_trainable_before_lora", ()):
        variable.trainable = True
