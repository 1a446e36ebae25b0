"""Root-mean-square layer normalisation (Zhang and Sennrich, 2019), Llama's norm."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerasllm")
class RMSNorm(keras.layers.Layer):
    """x / sqrt(mean(x ** 2 over the last axis) + epsilon) * scale: LayerNorm without
    centring and without an offset. Its one weight is `scale` [hidden], initially 1.

    Computed in float32 whatever the dtype policy: under bfloat16 the mean of squares
    of a wide hidden state loses most of its digits.

    Call args:
        inputs: float [..., hidden].
    Returns:
        float [..., hidden], the dtype of `inputs`.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        # Without autocasting the float32 scale is read as it is stored, not rounded
        # to the compute dtype of a mixed policy.
        super().__init__(autocast=False, **kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],),
                                     initializer="ones")
        self.built = True

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        normalised = x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True)
                                   + self.epsilon)
        return ops.cast(normalised * ops.cast(self.scale, "float32"), inputs.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
