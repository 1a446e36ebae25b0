"""One pre-LN Transformer decoder block: causal self-attention then a feed-forward net."""
import keras
from keras import ops

from kerasllm.layers.attention import MultiHeadAttention
from kerasllm.layers.feed_forward import FeedForward, GatedFeedForward
from kerasllm.layers.rms_norm import RMSNorm
from kerasllm.layers.rotary_embedding import RotaryEmbedding

NORMS = ("layer_norm", "rms_norm")
FEED_FORWARDS = {"gelu_mlp": FeedForward, "swiglu": GatedFeedForward}


def normalization(kind, epsilon, **kwargs):
    """A norm layer: "layer_norm" (keras LayerNormalization, weights gamma and beta)
    or "rms_norm" (RMSNorm, weight scale); `kwargs` go to the layer."""
    if kind == "layer_norm":
        return keras.layers.LayerNormalization(epsilon=epsilon, **kwargs)
    if kind == "rms_norm":
        return RMSNorm(epsilon=epsilon, **kwargs)
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


@keras.saving.register_keras_serializable(package="kerasllm")
class TransformerDecoderBlock(keras.layers.Layer):
    """Causal self-attention + feed-forward, each a pre-LN residual branch:
        h = x + Dropout(SelfAttention(Norm(x)));  y = h + Dropout(FFN(Norm(h)))

    GPT-2: norm="layer_norm", feed_forward="gelu_mlp" (Dense to intermediate_size,
    tanh-approximated GELU, Dense back), biases. Llama-style: norm="rms_norm",
    feed_forward="swiglu", use_bias=False, `rotary_max_wavelength` for rotary
    positions, and fewer `num_key_value_heads` than heads.

    Sub-layers: self_attention_norm, self_attention (a MultiHeadAttention),
    feed_forward_norm, feed_forward (FeedForward or GatedFeedForward).

    Call args:
        inputs: float [batch, seq, hidden].
        padding_mask: int/bool [batch, key_length], 1 = the key is a real token; or
            None. key_length is seq without a cache and the cache's max_length with
            one (then it marks the cache slots that hold real tokens).
        positions: int [batch, seq], each token's position (for rotary embeddings);
            defaults to 0 .. seq - 1, offset by cache_update_index.
        cache: float [batch, 2, max_length, num_key_value_heads, head_size], this
            block's KV cache (see kerasllm.layers.attention.empty_cache); or None.
        cache_update_index: int scalar, the cache slot of the first of the seq tokens.
    Returns:
        float [batch, seq, hidden]; with a cache, `(output, new_cache)`.
    """

    def __init__(self, num_heads, intermediate_size, num_key_value_heads=None,
                 norm="layer_norm", norm_epsilon=1e-5, feed_forward="gelu_mlp",
                 use_bias=True, rotary_max_wavelength=None, dropout=0.0,
                 attention_dropout=0.0, initializer_range=0.02, **kwargs):
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if feed_forward not in FEED_FORWARDS:
            raise ValueError(f"feed_forward must be one of {tuple(FEED_FORWARDS)}, "
                             f"got {feed_forward!r}")
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.num_key_value_heads = num_key_value_heads or num_heads
        self.norm = norm
        self.norm_epsilon = norm_epsilon
        self.feed_forward_kind = feed_forward
        self.use_bias = use_bias
        self.rotary_max_wavelength = rotary_max_wavelength
        self.dropout_rate = dropout
        self.attention_dropout = attention_dropout
        self.initializer_range = initializer_range

    def build(self, input_shape):
        hidden = input_shape[-1]
        if hidden % self.num_heads:
            raise ValueError(
                f"hidden size {hidden} is not divisible by num_heads {self.num_heads}")
        dtype = self.dtype_policy
        rotary = (None if self.rotary_max_wavelength is None else RotaryEmbedding(
            self.rotary_max_wavelength, dtype=dtype, name="rotary_embedding"))
        self.self_attention_norm = normalization(
            self.norm, self.norm_epsilon, dtype=dtype, name="self_attention_norm")
        self.self_attention_norm.build(input_shape)
        self.self_attention = MultiHeadAttention(
            self.num_heads, hidden // self.num_heads, dropout=self.attention_dropout,
            use_bias=self.use_bias, initializer_range=self.initializer_range,
            num_key_value_heads=self.num_key_value_heads, rotary_embedding=rotary,
            dtype=dtype, name="self_attention")
        self.self_attention.build(input_shape)
        self.feed_forward_norm = normalization(
            self.norm, self.norm_epsilon, dtype=dtype, name="feed_forward_norm")
        self.feed_forward_norm.build(input_shape)
        # Each class's default activation is its family's: tanh GELU, SiLU.
        self.feed_forward = FEED_FORWARDS[self.feed_forward_kind](
            self.intermediate_size, use_bias=self.use_bias,
            initializer_range=self.initializer_range, dtype=dtype, name="feed_forward")
        self.feed_forward.build(input_shape)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=dtype)
        self.built = True

    def call(self, inputs, padding_mask=None, positions=None, cache=None,
             cache_update_index=None, training=None):
        key_mask = (None if padding_mask is None
                    else ops.expand_dims(ops.cast(padding_mask, "bool"), 1))
        attended = self.self_attention(
            self.self_attention_norm(inputs), attention_mask=key_mask, use_causal_mask=True,
            positions=positions, cache=cache, cache_update_index=cache_update_index,
            training=training)
        if cache is not None:
            attended, cache = attended
        x = inputs + self.dropout(attended, training=training)
        # Every sub-layer is a residual branch of this form: a seq2seq decoder's
        # cross-attention is one more, here, with its own norm.
        x = x + self.dropout(self.feed_forward(self.feed_forward_norm(x)), training=training)
        return x if cache is None else (x, cache)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        return {
            **super().get_config(),
            "num_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "num_key_value_heads": self.num_key_value_heads,
            "norm": self.norm,
            "norm_epsilon": self.norm_epsilon,
            "feed_forward": self.feed_forward_kind,
            "use_bias": self.use_bias,
            "rotary_max_wavelength": self.rotary_max_wavelength,
            "dropout": self.dropout_rate,
            "attention_dropout": self.attention_dropout,
            "initializer_range": self.initializer_range,
        }
