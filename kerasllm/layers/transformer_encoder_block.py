"""One Transformer encoder block: self-attention then a position-wise feed-forward net."""
import keras
from keras import ops

from kerasllm.layers.attention import MultiHeadAttention
from kerasllm.layers.matmul_einsum_dense import dense


@keras.saving.register_keras_serializable(package="kerasllm")
class TransformerEncoderBlock(keras.layers.Layer):
    """Self-attention + feed-forward, each wrapped in dropout, residual and LayerNorm.

    Post-LN (the original BERT/Transformer formulation, the default):
        h = LN(x + Dropout(Attention(x)));  y = LN(h + Dropout(FFN(h)))
    Pre-LN (`norm_first=True`, more stable for deep stacks):
        h = x + Dropout(Attention(LN(x)));  y = h + Dropout(FFN(LN(h)))

    Two-stream mode (XLNet, Yang et al., 2019), with `query_stream`: the query
    stream g runs through the same weights as the content stream h (`inputs`), but
    its queries attend to the content stream's keys and values, under its own
    mask: g' = Block(queries g, keys/values h), h' = Block(queries h, keys/values h).

    Call args:
        inputs: float [batch, seq, hidden], the content stream.
        padding_mask: int/bool [batch, seq], 1 = real token; or None. No stream
            attends to padding.
        attention_mask: int/bool [batch, seq, seq] (row = attending position,
            column = attended); or None. Combined with padding_mask.
        query_stream: float [batch, query_seq, hidden]; or None (one stream).
        query_attention_mask: int/bool [batch, query_seq, seq]: what each query
            stream position may see of the content stream; or None.
    Returns:
        float [batch, seq, hidden]; in two-stream mode the pair (content stream,
        query stream float [batch, query_seq, hidden]).
    """

    def __init__(self, num_heads, intermediate_size, dropout=0.1, attention_dropout=0.1,
                 activation="gelu", layer_norm_epsilon=1e-12, norm_first=False,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.dropout_rate = dropout
        self.attention_dropout = attention_dropout
        self.activation = activation
        self.layer_norm_epsilon = layer_norm_epsilon
        self.norm_first = norm_first
        self.initializer_range = initializer_range

    def build(self, input_shape):
        hidden = input_shape[-1]
        if hidden % self.num_heads:
            raise ValueError(
                f"hidden size {hidden} is not divisible by num_heads {self.num_heads}")
        dtype = self.dtype_policy
        self.attention = MultiHeadAttention(
            self.num_heads, hidden // self.num_heads, dropout=self.attention_dropout,
            initializer_range=self.initializer_range, dtype=dtype, name="attention")
        self.attention.build(input_shape)
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=dtype, name="attention_norm")
        self.attention_norm.build(input_shape)
        self.intermediate_dense = dense(
            self.intermediate_size, activation=self.activation,
            initializer_range=self.initializer_range, dtype=dtype, name="intermediate")
        self.intermediate_dense.build(input_shape)
        self.output_dense = dense(hidden, initializer_range=self.initializer_range,
                                  dtype=dtype, name="output")
        self.output_dense.build(tuple(input_shape[:-1]) + (self.intermediate_size,))
        self.output_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=dtype, name="output_norm")
        self.output_norm.build(input_shape)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=dtype)
        self.built = True

    def call(self, inputs, padding_mask=None, attention_mask=None, query_stream=None,
             query_attention_mask=None, training=None):
        mask = _with_padding(attention_mask, padding_mask)
        if query_stream is None:
            return self._transform(inputs, mask, None, training)
        # Both streams read the content stream's keys and values: projected once.
        key_values = self.attention.key_values(
            self.attention_norm(inputs) if self.norm_first else inputs)
        return (self._transform(inputs, mask, key_values, training),
                self._transform(query_stream, _with_padding(query_attention_mask, padding_mask),
                                key_values, training))

    def _transform(self, inputs, mask, key_values, training):
        """The block on `inputs`, its attention over `key_values` (those of another
        stream) or, when None, over itself."""
        def attend(x):
            return self.dropout(
                self.attention(x, attention_mask=mask, key_values=key_values,
                               training=training), training=training)

        def feed_forward(x):
            return self.dropout(
                self.output_dense(self.intermediate_dense(x)), training=training)

        if self.norm_first:
            x = inputs + attend(self.attention_norm(inputs))
            return x + feed_forward(self.output_norm(x))
        x = self.attention_norm(inputs + attend(inputs))
        return self.output_norm(x + feed_forward(x))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "dropout": self.dropout_rate,
            "attention_dropout": self.attention_dropout,
            "activation": self.activation,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "norm_first": self.norm_first,
            "initializer_range": self.initializer_range,
        }


def _with_padding(attention_mask, padding_mask):
    """bool [batch, query_seq or 1, seq]: `attention_mask` without the padded keys."""
    if padding_mask is None:
        return attention_mask
    key_mask = ops.expand_dims(ops.cast(padding_mask, "bool"), 1)
    return key_mask if attention_mask is None else ops.logical_and(
        ops.cast(attention_mask, "bool"), key_mask)
