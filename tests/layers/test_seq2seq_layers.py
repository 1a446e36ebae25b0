"""The encoder-decoder layers: sinusoidal positions, attention over precomputed keys and
values, and the decoder block's cross-attention and post-LN form."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.layers import (MultiHeadAttention, RotaryEmbedding, SinusoidalPositionEmbedding,
                             TransformerDecoderBlock, empty_cache)
from tests.roundtrip import config_roundtrip

RNG = np.random.default_rng(0)


def normal(*shape):
    return RNG.normal(size=shape).astype("float32")


def test_sinusoidal_positions_are_the_papers_formula_interleaved():
    layer = SinusoidalPositionEmbedding(hidden_size=8)
    positions = np.array([[0, 1, 2, 70], [0, 0, 1, 500]])
    out = np.asarray(layer(positions))
    assert out.shape == (2, 4, 8) and layer.weights == []
    want = np.empty((2, 4, 8))
    for i in range(4):
        angle = positions / 10000.0 ** (2 * i / 8)
        want[..., 2 * i], want[..., 2 * i + 1] = np.sin(angle), np.cos(angle)
    np.testing.assert_allclose(out, want, atol=1e-4)
    np.testing.assert_allclose(out[0, 0], [0, 1] * 4)
    assert config_roundtrip(layer).hidden_size == 8


def test_sinusoidal_positions_follow_the_compute_dtype_and_need_an_even_width():
    out = SinusoidalPositionEmbedding(16, dtype="mixed_bfloat16")(np.array([[0, 300]]))
    assert out.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(out, tf.float32),
                               SinusoidalPositionEmbedding(16)(np.array([[0, 300]])),
                               atol=1e-2)
    with pytest.raises(ValueError, match="even hidden_size"):
        SinusoidalPositionEmbedding(7)


def test_attention_over_precomputed_key_values_equals_projecting_the_value():
    layer = MultiHeadAttention(num_heads=4, head_size=4, num_key_value_heads=2)
    query, value = normal(2, 3, 16), normal(2, 5, 16)
    mask = np.array([[1, 1, 1, 0, 0], [1] * 5])[:, None, :]
    direct = layer(query, value, attention_mask=mask)
    key_values = layer.key_values(value)
    # The KV cache's layout: [batch, keys | values, length, kv heads, head size].
    assert key_values.shape == (2, 2, 5, 2, 4)
    np.testing.assert_allclose(key_values[:, 0], layer.key_dense(value))
    np.testing.assert_allclose(layer(query, attention_mask=mask, key_values=key_values),
                               direct, atol=1e-6)
    assert len(layer.weights) == 8  # nothing new
    with pytest.raises(ValueError, match="replaces `value`"):
        layer(query, value, key_values=key_values)
    with pytest.raises(ValueError, match="replaces `value`"):
        layer(query, key_values=key_values, cache=empty_cache(2, 4, 2, 4),
              cache_update_index=0)
    rotary = MultiHeadAttention(num_heads=4, head_size=4, rotary_embedding=RotaryEmbedding())
    with pytest.raises(ValueError, match="build the attention layer"):
        rotary.key_values(value)
    rotary(query)
    with pytest.raises(ValueError, match="without a rotary embedding"):
        rotary(query, key_values=rotary.key_values(value))


def cross_block(norm_position="post", **kwargs):
    return TransformerDecoderBlock(num_heads=4, intermediate_size=32, cross_attention=True,
                                   norm_position=norm_position, activation="relu", **kwargs)


SOURCE = normal(2, 5, 16)
SOURCE_MASK = np.array([[1, 1, 1, 0, 0], [1] * 5])


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_cross_attention_block_weights_key_values_and_round_trip(norm_position):
    block = cross_block(norm_position)
    x = normal(2, 4, 16)
    out = block(x, encoder_output=SOURCE, encoder_padding_mask=SOURCE_MASK)
    assert out.shape == (2, 4, 16)
    assert [w.path.split("/")[1] for w in block.weights][::2] == [
        "self_attention_norm", *["self_attention"] * 4, "cross_attention_norm",
        *["cross_attention"] * 4, "feed_forward_norm", *["feed_forward"] * 2]
    assert block.feed_forward.activation == "relu"
    precomputed = block.cross_key_values(SOURCE)
    np.testing.assert_allclose(
        block(x, encoder_key_values=precomputed, encoder_padding_mask=SOURCE_MASK), out,
        atol=1e-5)
    # The source's padding is never read.
    changed = SOURCE.copy()
    changed[0, 3:] = 9.0
    np.testing.assert_allclose(
        block(x, encoder_output=changed, encoder_padding_mask=SOURCE_MASK), out, atol=1e-5)
    clone = config_roundtrip(block)
    clone(x, encoder_output=SOURCE)
    assert clone.count_params() == block.count_params()


def test_post_ln_block_ends_in_its_norm_and_pre_ln_does_not():
    x = normal(2, 4, 16) + 10.0
    post = np.asarray(cross_block("post")(x, encoder_output=SOURCE))
    # Fresh LayerNorms (gamma 1, beta 0): every token comes out standardised.
    np.testing.assert_allclose(post.mean(-1), 0.0, atol=1e-4)
    np.testing.assert_allclose(post.std(-1), 1.0, atol=1e-3)
    pre = np.asarray(cross_block("pre")(x, encoder_output=SOURCE))
    assert pre.mean(-1).min() > 5.0  # the residual stream, carrying x's offset


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_cached_cross_attention_steps_equal_the_full_pass(norm_position):
    block = cross_block(norm_position)
    x = normal(2, 6, 16)
    mask = np.array([[0, 1, 1, 1, 1, 1], [1] * 6])  # row 0 left-padded, as in decoding
    positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
    source = dict(encoder_padding_mask=SOURCE_MASK)
    full = block(x, padding_mask=mask, positions=positions, encoder_output=SOURCE, **source)
    key_values = block.cross_key_values(SOURCE)
    cache = empty_cache(2, 6, 4, 4)
    out, cache = block(x[:, :2], padding_mask=mask, positions=positions[:, :2], cache=cache,
                       cache_update_index=0, encoder_key_values=key_values, **source)
    outputs = [out]
    for i in range(2, 6):
        out, cache = block(x[:, i:i + 1], padding_mask=mask, positions=positions[:, i:i + 1],
                           cache=cache, cache_update_index=i, encoder_key_values=key_values,
                           **source)
        outputs.append(out)
    real = mask.astype(bool)
    np.testing.assert_allclose(np.concatenate(outputs, 1)[real], np.asarray(full)[real],
                               atol=1e-5)


def test_cross_attention_inputs_are_required_exactly_when_there_is_cross_attention():
    x = normal(1, 3, 16)
    with pytest.raises(ValueError, match="needs `encoder_output`"):
        cross_block()(x)
    with pytest.raises(ValueError, match="takes no encoder inputs"):
        TransformerDecoderBlock(num_heads=4, intermediate_size=32)(x, encoder_output=SOURCE)
    with pytest.raises(ValueError, match="norm_position must be one of"):
        TransformerDecoderBlock(4, 32, norm_position="sandwich")


def test_a_gpt_block_saved_before_these_options_loads_unchanged():
    block = TransformerDecoderBlock(num_heads=4, intermediate_size=32)
    x = normal(1, 3, 16)
    out = block(x)
    old_config = {key: value for key, value in block.get_config().items()
                  if key not in ("cross_attention", "norm_position", "activation")}
    old = TransformerDecoderBlock.from_config(old_config)
    old(x)
    assert [w.path.split("/", 1)[1] for w in old.weights] == \
        [w.path.split("/", 1)[1] for w in block.weights]
    old.set_weights(block.get_weights())
    np.testing.assert_allclose(old(x), out)
    assert old.feed_forward.activation == "gelu_tanh"


def test_cross_attention_under_mixed_bfloat16():
    keras.config.set_dtype_policy("mixed_bfloat16")
    block = cross_block("pre")
    source = tf.cast(SOURCE, tf.bfloat16)
    key_values = block.cross_key_values(source)
    assert key_values.dtype == tf.bfloat16
    out, _ = block(tf.cast(normal(2, 1, 16), tf.bfloat16), cache=empty_cache(2, 3, 4, 4,
                                                                            "bfloat16"),
                   cache_update_index=0, encoder_key_values=key_values,
                   encoder_padding_mask=SOURCE_MASK)
    assert out.dtype == tf.bfloat16 and np.isfinite(tf.cast(out, tf.float32)).all()
