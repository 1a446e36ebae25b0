"""Rotary position embeddings (RoPE, Su et al., 2021): a token's position becomes a
rotation of its query and key vectors."""
import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="kerasllm")
class RotaryEmbedding(keras.layers.Layer):
    """Rotates every head's feature pair (i, i + d/2), i in [0, d/2), by the angle
    position * max_wavelength ** (-2i / d), where d is the head size.

    The pairs are the "rotate half" layout of Hugging Face Llama checkpoints (whose
    query and key projections are permuted to match), not the paper's adjacent pairs
    (2i, 2i + 1). The dot product of a query rotated to position m and a key rotated
    to position n then depends on the positions only through m - n.

    Has no weights; `max_wavelength` is the base often called theta (10000 in Llama,
    100000 in SmolLM2).

    Call args:
        inputs: float [batch, seq, heads, head_size], head_size even.
        positions: int [batch, seq] (or [1, seq], broadcast over the batch), each
            token's position; per row, so that a left-padded row starts at 0 at its
            first real token.
    Returns:
        float [batch, seq, heads, head_size], the dtype of `inputs`.
    """

    def __init__(self, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = float(max_wavelength)

    def call(self, inputs, positions):
        head_size = inputs.shape[-1]
        if head_size % 2:
            raise ValueError(f"rotary embeddings need an even head size, got {head_size}")
        # Frequencies in float64 on the host, angles and the rotation in float32: at
        # position 8192 a bfloat16 angle would be off by whole turns.
        inverse_frequencies = (
            1.0 / self.max_wavelength ** (np.arange(0, head_size, 2) / head_size)
        ).astype("float32")
        angles = ops.expand_dims(ops.cast(positions, "float32"), -1) * inverse_frequencies
        angles = ops.expand_dims(ops.concatenate([angles, angles], axis=-1), 2)
        x = ops.cast(inputs, "float32")
        first, second = ops.split(x, 2, axis=-1)
        rotated_half = ops.concatenate([-second, first], axis=-1)
        outputs = x * ops.cos(angles) + rotated_half * ops.sin(angles)
        return ops.cast(outputs, inputs.dtype)

    def compute_output_shape(self, inputs_shape, positions_shape=None):
        return tuple(inputs_shape)

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}
