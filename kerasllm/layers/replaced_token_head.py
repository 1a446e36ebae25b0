"""Tells, for every token, whether it was replaced (ELECTRA's discriminator head)."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerasllm")
class ReplacedTokenHead(keras.layers.Layer):
    """One logit per token: dense + activation at the hidden width, then one unit.

    Call args:
        sequence_output: float [batch, seq, hidden].
    Returns:
        float32 logits [batch, seq], > 0 for "replaced" (float32 under mixed
        precision, so the loss sees full precision).
    """

    def __init__(self, activation="gelu", initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.activation = activation
        self.initializer_range = initializer_range

    def build(self, sequence_output_shape):
        hidden = sequence_output_shape[-1]
        init = keras.initializers.TruncatedNormal(stddev=self.initializer_range)
        self.transform = keras.layers.Dense(
            hidden, activation=self.activation, kernel_initializer=init,
            dtype=self.dtype_policy, name="transform")
        self.transform.build((None, None, hidden))
        self.classifier = keras.layers.Dense(
            1, kernel_initializer=init, dtype=self.dtype_policy, name="classifier")
        self.classifier.build((None, None, hidden))
        self.built = True

    def call(self, sequence_output):
        logits = self.classifier(self.transform(sequence_output))
        return ops.cast(ops.squeeze(logits, -1), "float32")

    def compute_output_shape(self, sequence_output_shape):
        return tuple(sequence_output_shape[:-1])

    def get_config(self):
        return {**super().get_config(), "activation": self.activation,
                "initializer_range": self.initializer_range}
