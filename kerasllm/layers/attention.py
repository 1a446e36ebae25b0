"""Multi-head scaled dot-product attention with padding/causal masks, grouped key/value
heads, rotary positions and a KV cache."""
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


def empty_cache(batch_size, max_length, num_key_value_heads, head_size, dtype="float32"):
    """The KV cache of one attention layer before any token is written: zeros
    [batch_size, 2, max_length, num_key_value_heads, head_size], keys at index 0 of
    axis 1 and values at index 1. Batch first, so beam search reorders it with
    tf.gather(cache, beam_rows, axis=0)."""
    return ops.zeros((batch_size, 2, max_length, num_key_value_heads, head_size), dtype)


def write_to_cache(cache, keys, values, start_index):
    """`cache` [batch, 2, max_length, kv_heads, head_size] with `keys` and `values`
    [batch, length, kv_heads, head_size] written to slots start_index ..
    start_index + length - 1 of every row.

    One scatter at (row, key or value, slot) triples: keras.ops.slice_update lowers to
    XlaDynamicUpdateSlice on TensorFlow, which TF Serving cannot run with XLA
    compilation disabled (its default), and the scatter needs no transposes of the
    cache.
    """
    batch, length = tf.shape(keys)[0], tf.shape(keys)[1]
    shape = tf.stack([batch, 2, length])
    slots = tf.range(length) + tf.cast(start_index, tf.int32)
    indices = tf.stack([
        tf.broadcast_to(tf.range(batch)[:, None, None], shape),
        tf.broadcast_to(tf.range(2)[None, :, None], shape),
        tf.broadcast_to(slots[None, None, :], shape),
    ], axis=-1)
    updates = tf.cast(tf.stack([keys, values], axis=1), cache.dtype)
    return tf.tensor_scatter_nd_update(cache, indices, updates)


@keras.saving.register_keras_serializable(package="kerasllm")
class MultiHeadAttention(keras.layers.Layer):
    """Scaled dot-product attention over `num_heads` heads of size `head_size`.

    With `num_key_value_heads` < num_heads (grouped-query attention, Ainslie et al.,
    2023) the keys and values have fewer heads, each shared by num_heads /
    num_key_value_heads consecutive query heads: query head n reads key/value head
    n // (num_heads / num_key_value_heads), as Hugging Face's checkpoints expect.
    The default (equal counts) is ordinary multi-head attention, with the weights
    BERT checkpoints hold.

    With a `rotary_embedding` (a layer called as rotary_embedding(x, positions), e.g.
    `RotaryEmbedding`) queries and keys are rotated to their tokens' positions before
    the dot product; this is for self-attention, where keys and queries are the same
    tokens.

    Cross-attention over a source that many queries read (every decoding step, every
    beam) projects it once: `key_values(value)` gives its keys and values, and
    calls pass them as `key_values=` instead of `value`.

    Call args:
        query: float [batch, query_length, hidden].
        value: float [batch, key_length, hidden]; defaults to `query` (self-attention).
        key_values: float [batch, 2, key_length, num_key_value_heads, head_size],
            from `key_values(value)`: attend to these instead of projecting `value`
            (which must then be None). Not with a cache.
        attention_mask: bool/int [batch, query_length or 1, key_length], 1 = may
            attend; or None. With a cache key_length is the cache's max_length.
        use_causal_mask: also forbid attending to later positions.
        positions: int [batch or 1, query_length], the tokens' positions for the
            rotary embedding; defaults to 0 .. query_length - 1, offset by
            `cache_update_index`. Unused without a rotary embedding.
        cache: optional float [batch, 2, max_length, num_key_value_heads, head_size]
            (see `empty_cache`) holding keys (index 0) and values (index 1) of earlier
            decoding steps; the keys and values of `value` are written at slots
            `cache_update_index` onwards, attention runs over the whole cache, and a
            causal mask over slots hides the slots not yet written.
        cache_update_index: int scalar, the cache slot of the first new token.
    Returns:
        float [batch, query_length, hidden]; with a cache, `(output, new_cache)`.
    """

    def __init__(self, num_heads, head_size, dropout=0.0, use_bias=True,
                 initializer_range=0.02, num_key_value_heads=None, rotary_embedding=None,
                 **kwargs):
        super().__init__(**kwargs)
        num_key_value_heads = num_key_value_heads or num_heads
        if num_heads % num_key_value_heads:
            raise ValueError(f"num_heads {num_heads} is not a multiple of "
                             f"num_key_value_heads {num_key_value_heads}")
        self.num_heads = num_heads
        self.head_size = head_size
        self.num_key_value_heads = num_key_value_heads
        self.dropout_rate = dropout
        self.use_bias = use_bias
        self.initializer_range = initializer_range
        if isinstance(rotary_embedding, dict):  # from get_config
            rotary_embedding = keras.saving.deserialize_keras_object(rotary_embedding)
        self.rotary_embedding = rotary_embedding

        def projection(name, heads):
            return MatmulEinsumDense(
                "btd,dnh->btnh", output_shape=(None, heads, head_size),
                bias_axes="nh" if use_bias else None,
                kernel_initializer=keras.initializers.TruncatedNormal(
                    stddev=initializer_range),
                dtype=self.dtype_policy, name=name)

        self.query_dense = projection("query", num_heads)
        self.key_dense = projection("key", num_key_value_heads)
        self.value_dense = projection("value", num_key_value_heads)
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

    def key_values(self, value):
        """float [batch, 2, key_length, num_key_value_heads, head_size]: the keys
        (index 0 of axis 1) and values (index 1) of `value` float [batch, key_length,
        hidden], in the layout of the KV cache, for `call(..., key_values=)`. The
        layer must be built: the value alone does not say how wide the queries are."""
        if not self.built:
            raise ValueError("build the attention layer (or call it) before key_values")
        return ops.stack([self.key_dense(value), self.value_dense(value)], axis=1)

    def call(self, query, value=None, attention_mask=None, use_causal_mask=False,
             positions=None, cache=None, cache_update_index=None, key_values=None,
             training=None):
        q = self.query_dense(query)
        if key_values is not None:
            if value is not None or cache is not None:
                raise ValueError("`key_values` replaces `value` and cannot be combined "
                                 "with a cache")
            if self.rotary_embedding is not None:
                # Rotary keys turn with the queries' positions: only self-attention
                # has them, and its keys cannot be computed ahead.
                raise ValueError("precomputed `key_values` are for cross-attention, "
                                 "without a rotary embedding")
            k, v = key_values[:, 0], key_values[:, 1]
        else:
            value = query if value is None else value
            k = self.key_dense(value)
            v = self.value_dense(value)

        query_offset = 0
        if cache is not None:
            if cache_update_index is None:
                raise ValueError("`cache_update_index` is required when `cache` is given.")
            query_offset = cache_update_index
        if self.rotary_embedding is not None:
            if positions is None:
                positions = ops.expand_dims(
                    ops.arange(ops.shape(q)[1], dtype="int32") + query_offset, 0)
            q = self.rotary_embedding(q, positions)
            k = self.rotary_embedding(k, positions)
        if cache is not None:
            # Keys are cached after their rotation: a token's position never changes.
            cache = write_to_cache(cache, k, v, cache_update_index)
            k, v = cache[:, 0], cache[:, 1]
            use_causal_mask = True

        mask = None if attention_mask is None else ops.cast(attention_mask, "bool")
        if use_causal_mask:
            causal = causal_mask(ops.shape(q)[1], ops.shape(k)[1], query_offset)
            causal = ops.expand_dims(causal, 0)
            mask = causal if mask is None else ops.logical_and(mask, causal)

        batch, length = ops.shape(q)[0], ops.shape(q)[1]
        groups = self.num_heads // self.num_key_value_heads
        if groups > 1:
            # Query head n = kv * groups + g, sharing key/value head kv: a grouped
            # einsum reads each cached key once instead of repeating it per group.
            q = ops.reshape(q, (batch, length, self.num_key_value_heads, groups,
                                self.head_size))
            scores_equation, context_equation = "btkgh,bskh->bkgts", "bkgts,bskh->btkgh"
        else:
            # Not the grouped form with one group: TensorFlow runs these 4-D einsums
            # about a third faster (BERT-base shapes, CPU, forward and backward).
            scores_equation, context_equation = "btnh,bsnh->bnts", "bnts,bsnh->btnh"
        scores = ops.einsum(scores_equation, q, k) * (1.0 / float(self.head_size) ** 0.5)
        # Softmax in float32: float16 scores overflow and masked -inf turn into NaN.
        scores = ops.cast(scores, "float32")
        if mask is not None:
            for _ in range(len(scores.shape) - 3):  # [batch, ..heads.., query, key]
                mask = ops.expand_dims(mask, 1)
            scores = ops.where(mask, scores, -1e9)
        weights = ops.cast(ops.softmax(scores, axis=-1), self.compute_dtype)
        weights = self.dropout(weights, training=training)
        context = ops.einsum(context_equation, weights, v)
        context = ops.reshape(context, (batch, length, self.num_heads, self.head_size))
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
            "num_key_value_heads": self.num_key_value_heads,
            "rotary_embedding": (
                None if self.rotary_embedding is None
                else keras.saving.serialize_keras_object(self.rotary_embedding)),
        }
