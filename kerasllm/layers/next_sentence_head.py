"""Classifies whether segment B follows segment A (BERT's NSP head)."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerasllm")
class NextSentencePredictionHead(keras.layers.Layer):
    """Two logits from the pooled [CLS] vector: index 1 = "B follows A".

    The tanh pooler (dense + tanh on [CLS]) lives in `BertEncoder`, as in the
    published BERT checkpoints, where it belongs to the backbone and feeds
    every sentence-level head; this head is the final projection.

    Call args:
        pooled_output: float [batch, hidden].
    Returns:
        float32 logits [batch, 2].
    """

    def __init__(self, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.initializer_range = initializer_range
        self.classifier = keras.layers.Dense(
            2, kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=initializer_range),
            dtype=self.dtype_policy, name="classifier")

    def build(self, pooled_output_shape):
        self.classifier.build(pooled_output_shape)
        self.built = True

    def call(self, pooled_output):
        return ops.cast(self.classifier(pooled_output), "float32")

    def compute_output_shape(self, pooled_output_shape):
        return tuple(pooled_output_shape[:-1]) + (2,)

    def get_config(self):
        return {**super().get_config(), "initializer_range": self.initializer_range}
