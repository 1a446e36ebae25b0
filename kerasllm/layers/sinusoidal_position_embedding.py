"""The fixed sinusoidal position embeddings of the original Transformer (Vaswani et
al., 2017, section 3.5)."""
import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="kerasllm")
class SinusoidalPositionEmbedding(keras.layers.Layer):
    """The paper's formula, interleaved as in the paper: for i in [0, hidden_size / 2)

        PE(pos, 2i)     = sin(pos / max_wavelength ** (2i / hidden_size))
        PE(pos, 2i + 1) = cos(pos / max_wavelength ** (2i / hidden_size))

    (not the concatenated [sin..., cos...] layout of tensor2tensor and Keras Hub).
    No weights, so any position works, including ones longer than training saw.

    Call args:
        positions: int [batch, seq] (or [1, seq]), each token's position.
    Returns:
        float [batch, seq, hidden_size] in the compute dtype.
    """

    def __init__(self, hidden_size, max_wavelength=10000.0, **kwargs):
        super().__init__(**kwargs)
        if hidden_size % 2:
            raise ValueError(f"sinusoidal position embeddings need an even hidden_size, "
                             f"got {hidden_size}")
        self.hidden_size = hidden_size
        self.max_wavelength = float(max_wavelength)

    def call(self, positions):
        # Frequencies in float64 on the host and angles in float32 whatever the
        # compute dtype: a bfloat16 angle at position 500 is off by more than a turn.
        inverse_frequencies = (1.0 / self.max_wavelength ** (
            np.arange(0, self.hidden_size, 2) / self.hidden_size)).astype("float32")
        angles = ops.expand_dims(ops.cast(positions, "float32"), -1) * inverse_frequencies
        pairs = ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1)
        embeddings = ops.reshape(pairs, (*ops.shape(angles)[:-1], self.hidden_size))
        return ops.cast(embeddings, self.compute_dtype)

    def compute_output_shape(self, positions_shape):
        return (*positions_shape, self.hidden_size)

    def get_config(self):
        return {**super().get_config(), "hidden_size": self.hidden_size,
                "max_wavelength": self.max_wavelength}
