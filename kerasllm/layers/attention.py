"""Multi-head scaled dot-product attention with padding/causal masks and a KV cache."""
import keras
import tensorflow as tf
from keras import ops

from kerasllm.layers.matmul_einsum_dense import MatmulEinsumDense


def causal_mask(query_length, key_length, query_offset=0):
    """Bool [query_length, key_length]: query i (at absolute position
    `query_offset + i`) may attend to keys at positions <= its own."""
    query_positions = ops.arange(query_length, dtype="int32") + query_offset
    key_positions = ops.arange(key_length, dtype="int32")
    return ops.expand_dims(query_positions, 1) >= ops.expand_dims(key_positions, 0)


def write_to_cache(cache, new_values, start_index):
    """Writes `new_values` [batch, length, ...] into `cache` [batch, max_length, ...]
    at positions start_index .. start_index+length-1.

    Uses tensor_scatter_nd_update rather than keras.ops.slice_update: on the TF
    backend the latter lowers to XlaDynamicUpdateSlice, which TF Serving cannot
    run with XLA compilation disabled (its default).
    """
    length = tf.shape(new_values)[1]
    positions = tf.range(length) + tf.cast(start_index, tf.int32)
    perm = [1, 0] + list(range(2, len(cache.shape)))
    updated = tf.tensor_scatter_nd_update(
        tf.transpose(cache, perm),
        tf.expand_dims(positions, 1),
        tf.transpose(tf.cast(new_values, cache.dtype), perm),
    )
    return tf.transpose(updated, perm)


@keras.saving.register_keras_serializable(package="kerasllm")
class MultiHeadAttention(keras.layers.Layer):
    """Scaled dot-product attention over `num_heads` heads of size `head_size`.

    Call args:
        query: float [batch, query_length, hidden].
        value: float [batch, key_length, hidden]; defaults to `query` (self-attention).
        attention_mask: bool/int [batch, query_length, key_length], 1 = may attend;
            or None.
        use_causal_mask: also forbid attending to later positions.
        cache: optional float [batch, 2, max_length, num_heads, head_size] holding
            keys (index 0) and values (index 1) of earlier decoding steps; the keys
            and values of `value` are written at `cache_update_index`, attention runs
            over the whole cache, and a causal mask over absolute positions hides the
            slots not yet written.
        cache_update_index: int scalar, absolute position of the first new token.
    Returns:
        float [batch, query_length, hidden]; with a cache, `(output, new_cache)`.
    """

    def __init__(self, num_heads, head_size, dropout=0.0, use_bias=True,
                 initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.head_size = head_size
        self.dropout_rate = dropout
        self.use_bias = use_bias
        self.initializer_range = initializer_range

        def projection(name, output_shape, equation, bias_axes):
            return MatmulEinsumDense(
                equation, output_shape=output_shape,
                bias_axes=bias_axes if use_bias else None,
                kernel_initializer=keras.initializers.TruncatedNormal(
                    stddev=initializer_range),
                dtype=self.dtype_policy, name=name)

        heads = (None, num_heads, head_size)
        self.query_dense = projection("query", heads, "btd,dnh->btnh", "nh")
        self.key_dense = projection("key", heads, "btd,dnh->btnh", "nh")
        self.value_dense = projection("value", heads, "btd,dnh->btnh", "nh")
        self.dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, query_shape, value_shape=None):
        value_shape = value_shape or query_shape
        hidden = query_shape[-1]
        # The output projection is created here: its width is the input width.
        self.query_dense.build(query_shape)
        self.key_dense.build(value_shape)
        self.value_dense.build(value_shape)
        self.output_dense = MatmulEinsumDense(
            "btnh,nhd->btd", output_shape=(None, hidden),
            bias_axes="d" if self.use_bias else None,
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=self.initializer_range),
            dtype=self.dtype_policy, name="output")
        self.output_dense.build(tuple(query_shape[:-1]) + (self.num_heads, self.head_size))
        self.built = True

    def call(self, query, value=None, attention_mask=None, use_causal_mask=False,
             cache=None, cache_update_index=None, training=None):
        value = query if value is None else value
        q = self.query_dense(query)
        k = self.key_dense(value)
        v = self.value_dense(value)

        query_offset = 0
        if cache is not None:
            if cache_update_index is None:
                raise ValueError("`cache_update_index` is required when `cache` is given.")
            k = write_to_cache(cache[:, 0], k, cache_update_index)
            v = write_to_cache(cache[:, 1], v, cache_update_index)
            cache = ops.stack([k, v], axis=1)
            query_offset = cache_update_index
            use_causal_mask = True

        mask = None if attention_mask is None else ops.cast(attention_mask, "bool")
        if use_causal_mask:
            causal = causal_mask(ops.shape(q)[1], ops.shape(k)[1], query_offset)
            causal = ops.expand_dims(causal, 0)
            mask = causal if mask is None else ops.logical_and(mask, causal)

        scores = ops.einsum("bqnh,bknh->bnqk", q, k) * (1.0 / float(self.head_size) ** 0.5)
        # Softmax in float32: float16 scores overflow and masked -inf turn into NaN.
        scores = ops.cast(scores, "float32")
        if mask is not None:
            scores = ops.where(ops.expand_dims(mask, 1), scores, -1e9)
        weights = ops.cast(ops.softmax(scores, axis=-1), self.compute_dtype)
        weights = self.dropout(weights, training=training)
        context = ops.einsum("bnqk,bknh->bqnh", weights, v)
        output = self.output_dense(context)
        return output if cache is None else (output, cache)

    def compute_output_shape(self, query_shape, value_shape=None):
        return tuple(query_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "head_size": self.head_size,
            "dropout": self.dropout_rate,
            "use_bias": self.use_bias,
            "initializer_range": self.initializer_range,
        }
