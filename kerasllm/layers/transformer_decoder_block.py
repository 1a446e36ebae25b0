"""One Transformer decoder block: causal self-attention, optionally cross-attention to
an encoder's output, then a feed-forward net; pre-LN or post-LN."""
import keras
from keras import ops

from kerasllm.layers.attention import MultiHeadAttention
from kerasllm.layers.feed_forward import FeedForward, GatedFeedForward
from kerasllm.layers.rms_norm import RMSNorm
from kerasllm.layers.rotary_embedding import RotaryEmbedding

NORMS = ("layer_norm", "rms_norm")
FEED_FORWARDS = {"gelu_mlp": FeedForward, "swiglu": GatedFeedForward}
NORM_POSITIONS = ("pre", "post")


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
    """Causal self-attention, optional cross-attention and a feed-forward net, each a
    residual branch with its own norm and dropout. Pre-LN (`norm_position="pre"`,
    GPT-2 and Llama):
        x = x + Dropout(Sublayer(Norm(x)))
    post-LN (`"post"`, the original Transformer, Vaswani et al., 2017):
        x = Norm(x + Dropout(Sublayer(x)))

    GPT-2: norm="layer_norm", feed_forward="gelu_mlp" (Dense to intermediate_size,
    tanh-approximated GELU, Dense back), biases. Llama-style: norm="rms_norm",
    feed_forward="swiglu", use_bias=False, `rotary_max_wavelength` for rotary
    positions, and fewer `num_key_value_heads` than heads. A seq2seq decoder:
    `cross_attention=True`, whose branch between the other two attends to the
    encoder's output (keys and values of the same width as this block's input);
    the original Transformer's has norm_position="post" and activation="relu".
    `activation` None keeps the feed-forward's own default (tanh GELU, SiLU).

    Sub-layers: self_attention_norm, self_attention (a MultiHeadAttention),
    [cross_attention_norm, cross_attention (a MultiHeadAttention),]
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
        encoder_output: float [batch, source_length, hidden], what cross-attention
            reads; or, computed once for many calls,
        encoder_key_values: float [batch, 2, source_length, num_key_value_heads,
            head_size], `cross_key_values(encoder_output)`. One of the two is
            required with cross-attention, neither is allowed without.
        encoder_padding_mask: int/bool [batch, source_length], 1 = real source
            token; or None.
    Returns:
        float [batch, seq, hidden]; with a cache, `(output, new_cache)`.
    """

    def __init__(self, num_heads, intermediate_size, num_key_value_heads=None,
                 norm="layer_norm", norm_epsilon=1e-5, feed_forward="gelu_mlp",
                 use_bias=True, rotary_max_wavelength=None, dropout=0.0,
                 attention_dropout=0.0, initializer_range=0.02, cross_attention=False,
                 norm_position="pre", activation=None, **kwargs):
        super().__init__(**kwargs)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if feed_forward not in FEED_FORWARDS:
            raise ValueError(f"feed_forward must be one of {tuple(FEED_FORWARDS)}, "
                             f"got {feed_forward!r}")
        if norm_position not in NORM_POSITIONS:
            raise ValueError(f"norm_position must be one of {NORM_POSITIONS}, "
                             f"got {norm_position!r}")
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
        self.has_cross_attention = cross_attention
        self.norm_position = norm_position
        self.activation = activation

    def build(self, input_shape):
        hidden = input_shape[-1]
        if hidden % self.num_heads:
            raise ValueError(
                f"hidden size {hidden} is not divisible by num_heads {self.num_heads}")
        dtype = self.dtype_policy

        def attention(name, rotary=None):
            layer = MultiHeadAttention(
                self.num_heads, hidden // self.num_heads, dropout=self.attention_dropout,
                use_bias=self.use_bias, initializer_range=self.initializer_range,
                num_key_value_heads=self.num_key_value_heads, rotary_embedding=rotary,
                dtype=dtype, name=name)
            layer.build(input_shape, input_shape)
            return layer

        def norm(name):
            layer = normalization(self.norm, self.norm_epsilon, dtype=dtype, name=name)
            layer.build(input_shape)
            return layer

        # Created in the order of their weights in existing checkpoints.
        self.self_attention_norm = norm("self_attention_norm")
        self.self_attention = attention("self_attention", rotary=(
            None if self.rotary_max_wavelength is None else RotaryEmbedding(
                self.rotary_max_wavelength, dtype=dtype, name="rotary_embedding")))
        if self.has_cross_attention:
            self.cross_attention_norm = norm("cross_attention_norm")
            # Rotary positions are the decoder's own: source keys have none of them.
            self.cross_attention = attention("cross_attention")
        self.feed_forward_norm = norm("feed_forward_norm")
        feed_forward_options = {} if self.activation is None else {
            "activation": self.activation}
        self.feed_forward = FEED_FORWARDS[self.feed_forward_kind](
            self.intermediate_size, use_bias=self.use_bias,
            initializer_range=self.initializer_range, dtype=dtype, name="feed_forward",
            **feed_forward_options)
        self.feed_forward.build(input_shape)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=dtype)
        self.built = True

    def _branch_input(self, x, norm):
        """What a sub-layer reads: the normed stream (pre-LN) or the stream itself."""
        return norm(x) if self.norm_position == "pre" else x

    def _add_branch(self, x, branch, norm, training):
        """The stream after adding a sub-layer's output `branch` to `x`."""
        x = x + self.dropout(branch, training=training)
        return x if self.norm_position == "pre" else norm(x)

    def cross_key_values(self, encoder_output):
        """float [batch, 2, source_length, num_key_value_heads, head_size]: the
        cross-attention keys and values of `encoder_output` [batch, source_length,
        hidden], to pass as `encoder_key_values` to every call over that source."""
        if not self.has_cross_attention:
            raise ValueError("this decoder block has no cross-attention")
        if not self.built:
            self.build(encoder_output.shape)  # the source is as wide as the input
        return self.cross_attention.key_values(encoder_output)

    def call(self, inputs, padding_mask=None, positions=None, cache=None,
             cache_update_index=None, encoder_output=None, encoder_key_values=None,
             encoder_padding_mask=None, training=None):
        has_source = encoder_output is not None or encoder_key_values is not None
        if has_source != self.has_cross_attention:
            raise ValueError(
                "a block with cross-attention needs `encoder_output` or "
                "`encoder_key_values`" if self.has_cross_attention else
                "this block has no cross-attention: it takes no encoder inputs")
        key_mask = (None if padding_mask is None
                    else ops.expand_dims(ops.cast(padding_mask, "bool"), 1))
        attended = self.self_attention(
            self._branch_input(inputs, self.self_attention_norm), attention_mask=key_mask,
            use_causal_mask=True, positions=positions, cache=cache,
            cache_update_index=cache_update_index, training=training)
        if cache is not None:
            attended, cache = attended
        x = self._add_branch(inputs, attended, self.self_attention_norm, training)
        if self.has_cross_attention:
            source_mask = (None if encoder_padding_mask is None
                           else ops.expand_dims(ops.cast(encoder_padding_mask, "bool"), 1))
            attended = self.cross_attention(
                self._branch_input(x, self.cross_attention_norm), encoder_output,
                attention_mask=source_mask, key_values=encoder_key_values,
                training=training)
            x = self._add_branch(x, attended, self.cross_attention_norm, training)
        x = self._add_branch(
            x, self.feed_forward(self._branch_input(x, self.feed_forward_norm)),
            self.feed_forward_norm, training)
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
            "cross_attention": self.has_cross_attention,
            "norm_position": self.norm_position,
            "activation": self.activation,
        }
