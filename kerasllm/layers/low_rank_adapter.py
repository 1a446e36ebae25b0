"""LoRA: a trainable low-rank update beside a frozen linear map (Hu et al., 2021)."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerasllm")
class LowRankAdapter(keras.layers.Layer):
    """The update (alpha / rank) * dropout(x) @ A @ B that LoRA adds to a frozen
    linear layer's x @ W, with A [input_size, rank] (He-uniform) and B [rank,
    output_size] (zeros, so a new adapter changes nothing).

    Computed through the rank-r bottleneck, never as the [input_size, output_size]
    product A @ B: the backward pass then costs two thin matmuls instead of the
    full weight gradient that fine-tuning W would. (Keras' own `enable_lora` adds
    A @ B to the kernel at every call, and factors a multi-head projection's
    kernel [d, heads, head_size] as [d, heads, r] x [r, head_size]; this adapter
    sees every linear map as [input_size, output_size], the form LoRA checkpoints
    elsewhere (PEFT) hold.)

    Call args:
        inputs: float [N, input_size] (the linear layer's input, flattened).
    Returns:
        float [N, output_size].
    """

    def __init__(self, rank, output_size, alpha=None, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.rank = int(rank)
        self.output_size = int(output_size)
        self.alpha = float(alpha if alpha is not None else rank)
        self.dropout_rate = float(dropout)
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    @property
    def scale(self):
        return self.alpha / self.rank

    def build(self, input_shape):
        self.a = self.add_weight(name="a", shape=(input_shape[-1], self.rank),
                                 initializer=keras.initializers.HeUniform())
        self.b = self.add_weight(name="b", shape=(self.rank, self.output_size),
                                 initializer="zeros")
        self.built = True

    def call(self, inputs, training=None):
        bottleneck = ops.matmul(self.dropout(inputs, training=training),
                                ops.cast(self.a, self.compute_dtype))
        return ops.matmul(bottleneck, ops.cast(self.b * self.scale, self.compute_dtype))

    def delta(self):
        """float32 [input_size, output_size]: what merging adds to the kernel."""
        return ops.matmul(self.a, self.b) * self.scale

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.output_size,)

    def get_config(self):
        return {**super().get_config(), "rank": self.rank, "output_size": self.output_size,
                "alpha": self.alpha, "dropout": self.dropout_rate}

