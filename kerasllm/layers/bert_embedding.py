"""Token + segment + learned position embeddings, the input layer of BERT."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerasllm")
class BertEmbedding(keras.layers.Layer):
    """Sums token, segment and position embeddings, then LayerNorm and dropout.

    Call args:
        token_ids: int [batch, seq].
        segment_ids: int [batch, seq], or None for all-zero segments.
        token_vectors: float [batch or 1, seq or 1, hidden_size], summed in place of
            the tokens' embeddings (token_ids then only give the shape); or None.
            XLNet's query stream starts this way, from a learned vector that knows
            its position but not its token.
    Returns:
        float [batch, seq, hidden_size].

    The token table is public (`token_embedding`) so output heads can tie
    their projection to it.
    """

    def __init__(
        self,
        vocab_size,
        hidden_size,
        max_sequence_length=512,
        type_vocab_size=2,
        dropout=0.1,
        layer_norm_epsilon=1e-12,
        initializer_range=0.02,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.max_sequence_length = max_sequence_length
        self.type_vocab_size = type_vocab_size
        self.dropout_rate = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.initializer_range = initializer_range
        init = keras.initializers.TruncatedNormal(stddev=initializer_range)
        self.token_embedding = keras.layers.Embedding(
            vocab_size, hidden_size, embeddings_initializer=init,
            dtype=self.dtype_policy, name="token_embedding")
        self.segment_embedding = keras.layers.Embedding(
            type_vocab_size, hidden_size, embeddings_initializer=init,
            dtype=self.dtype_policy, name="segment_embedding")
        self.position_embedding = keras.layers.Embedding(
            max_sequence_length, hidden_size, embeddings_initializer=init,
            dtype=self.dtype_policy, name="position_embedding")
        self.layer_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=self.dtype_policy, name="layer_norm")
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, token_ids_shape, segment_ids_shape=None):
        self.token_embedding.build(token_ids_shape)
        self.segment_embedding.build(token_ids_shape)
        self.position_embedding.build((self.max_sequence_length,))
        self.layer_norm.build(tuple(token_ids_shape) + (self.hidden_size,))
        self.built = True

    def call(self, token_ids, segment_ids=None, training=None, token_vectors=None):
        if segment_ids is None:
            segment_ids = ops.zeros_like(token_ids)
        if token_vectors is None:
            token_vectors = self.token_embedding(token_ids)
        seq_length = ops.shape(token_ids)[1]
        positions = ops.arange(seq_length, dtype="int32")
        embeddings = (
            ops.cast(token_vectors, self.compute_dtype)
            + self.segment_embedding(segment_ids)
            + ops.expand_dims(self.position_embedding(positions), 0)
        )
        return self.dropout(self.layer_norm(embeddings), training=training)

    def compute_output_shape(self, token_ids_shape, segment_ids_shape=None):
        return tuple(token_ids_shape) + (self.hidden_size,)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "max_sequence_length": self.max_sequence_length,
            "type_vocab_size": self.type_vocab_size,
            "dropout": self.dropout_rate,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "initializer_range": self.initializer_range,
        }
