"""Predicts the original tokens at masked positions (BERT's MLM head)."""
import keras
from keras import ops

from kerasllm.layers.vocabulary_projection import float_matrix, project


@keras.saving.register_keras_serializable(package="kerasllm")
class MaskedLMHead(keras.layers.Layer):
    """Gathers masked positions, transforms them (dense + activation + LayerNorm)
    and projects onto the vocabulary, plus a per-token bias.

    With `token_embedding` (a `keras.layers.Embedding` of shape [vocab, width])
    the projection reuses its table, as BERT ties input and output embeddings;
    the transform maps the hidden states onto the table's width, which differs
    where a small model shares a larger one's table (ELECTRA's generator). The
    tie is a reference to another layer, so it is not part of `get_config`: a
    head rebuilt from its config alone owns an untied projection, and the model
    that owns both layers re-ties them when it is rebuilt.

    Call args:
        sequence_output: float [batch, seq, hidden].
        masked_positions: int [batch, num_predictions], indices into seq.
    Returns:
        float logits [batch, num_predictions, vocab_size] (float32 under mixed
        precision, so the loss sees full precision).
    """

    def __init__(self, vocab_size, activation="gelu", layer_norm_epsilon=1e-12,
                 initializer_range=0.02, token_embedding=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        self.token_embedding = token_embedding

    def build(self, sequence_output_shape, masked_positions_shape=None):
        hidden = sequence_output_shape[-1]
        width = hidden if self.token_embedding is None else self.token_embedding.output_dim
        dtype = self.dtype_policy
        self.transform = keras.layers.Dense(
            width, activation=self.activation,
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=self.initializer_range),
            dtype=dtype, name="transform")
        self.transform.build((None, None, hidden))
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=dtype, name="layer_norm")
        self.layer_norm.build((None, None, width))
        if self.token_embedding is None:
            self.output_kernel = self.add_weight(
                name="output_kernel", shape=(self.vocab_size, hidden),
                initializer=keras.initializers.TruncatedNormal(
                    stddev=self.initializer_range))
        self.output_bias = self.add_weight(
            name="output_bias", shape=(self.vocab_size,), initializer="zeros")
        self.built = True

    def call(self, sequence_output, masked_positions):
        gathered = ops.take_along_axis(
            sequence_output,
            ops.expand_dims(ops.cast(masked_positions, "int32"), -1),
            axis=1,
        )
        hidden = self.layer_norm(self.transform(gathered))
        table = (float_matrix(self.token_embedding) if self.token_embedding is not None
                 else self.output_kernel)
        # Not einsum, whose gradient for this pattern TF computes much more slowly.
        return project(hidden, table, transpose=True) + ops.cast(self.output_bias, "float32")

    def compute_output_shape(self, sequence_output_shape, masked_positions_shape):
        return tuple(masked_positions_shape) + (self.vocab_size,)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_range": self.initializer_range,
        }
