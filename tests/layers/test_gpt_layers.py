"""The decoder layers: rotary positions, RMSNorm, the feed-forward nets, grouped-query
attention and its KV cache, and the decoder block."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.layers import (FeedForward, GatedFeedForward, MultiHeadAttention, RMSNorm,
                             RotaryEmbedding, TransformerDecoderBlock, empty_cache)
from tests.roundtrip import config_roundtrip

RNG = np.random.default_rng(0)


def normal(*shape):
    return RNG.normal(size=shape).astype("float32")


def numpy_rope(x, positions, base):
    """The rotation written out from its definition, pair (i, i + d/2) at a time."""
    half = x.shape[-1] // 2
    out = np.empty_like(x, dtype="float64")
    for i in range(half):
        angle = positions[:, :, None] * base ** (-2.0 * i / x.shape[-1])
        first, second = x[..., i], x[..., i + half]
        out[..., i] = first * np.cos(angle) - second * np.sin(angle)
        out[..., i + half] = second * np.cos(angle) + first * np.sin(angle)
    return out


@pytest.mark.parametrize("base", [10000.0, 100000.0])
def test_rotary_embedding_matches_its_equations(base):
    layer = RotaryEmbedding(max_wavelength=base)
    x = normal(2, 5, 3, 8)
    positions = np.array([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])  # row 0 left-padded
    np.testing.assert_allclose(layer(x, positions), numpy_rope(x, positions, base),
                               atol=1e-5)
    # Position 0 is no rotation.
    np.testing.assert_allclose(layer(x, np.zeros((2, 5), "int32")), x, atol=1e-6)
    clone = config_roundtrip(layer)
    assert clone.max_wavelength == base


def test_rotary_dot_products_depend_only_on_relative_position():
    layer = RotaryEmbedding()
    q, k = normal(1, 1, 1, 16), normal(1, 1, 1, 16)

    def score(m, n):
        rotated_q = layer(q, np.array([[m]]))
        rotated_k = layer(k, np.array([[n]]))
        return float(np.sum(np.asarray(rotated_q) * np.asarray(rotated_k)))

    assert score(7, 3) == pytest.approx(score(104, 100), abs=1e-4)
    assert score(0, 0) == pytest.approx(score(50, 50), abs=1e-4)
    assert score(7, 3) != pytest.approx(score(7, 5), abs=1e-3)


def test_rotary_embedding_under_bfloat16_matches_float32():
    x = normal(1, 4, 2, 8)
    positions = np.arange(100, 104)[None]
    out = RotaryEmbedding(dtype="mixed_bfloat16")(tf.cast(x, tf.bfloat16), positions)
    assert out.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(out, tf.float32), RotaryEmbedding()(x, positions),
                               atol=3e-2)


def test_rms_norm_matches_numpy_and_keeps_the_input_dtype():
    layer = RMSNorm(epsilon=1e-5)
    x = normal(2, 3, 16) * 3.0
    layer.build(x.shape)
    assert [w.path.split("/")[-1] for w in layer.weights] == ["scale"]
    scale = normal(16)
    layer.set_weights([scale])
    want = x / np.sqrt(np.mean(x ** 2, -1, keepdims=True) + 1e-5) * scale
    np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-5)
    half = layer(tf.cast(x, tf.bfloat16))
    assert half.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(half, tf.float32), want, rtol=2e-2, atol=2e-2)
    assert config_roundtrip(layer).epsilon == 1e-5


def test_rms_norm_reads_its_scale_in_float32_under_mixed_precision():
    layer = RMSNorm(dtype="mixed_bfloat16")
    x = tf.cast(normal(1, 2, 8), tf.bfloat16)
    layer.build(x.shape)
    assert layer.scale.dtype == "float32"
    assert layer(x).dtype == tf.bfloat16


def test_gated_feed_forward_is_swiglu():
    layer = GatedFeedForward(intermediate_size=12)
    x = normal(2, 3, 8)
    out = layer(x)
    assert out.shape == (2, 3, 8)
    assert [w.path.split("/")[-2] for w in layer.weights] == ["gate", "up", "down"]
    gate, up, down = (w.numpy() for w in layer.weights)  # no biases by default
    g = x @ gate
    np.testing.assert_allclose(out, (g / (1 + np.exp(-g)) * (x @ up)) @ down, atol=1e-5)
    config_roundtrip(layer)
    biased = GatedFeedForward(12, use_bias=True)
    biased(x)
    assert len(biased.weights) == 6


def test_feed_forward_is_gpt2s_mlp_with_tanh_gelu():
    layer = FeedForward(intermediate_size=12)
    x = normal(2, 3, 8)
    out = layer(x)
    kernel_in, bias_in, kernel_out, bias_out = (w.numpy() for w in layer.weights)
    h = x @ kernel_in + bias_in
    gelu = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h ** 3)))
    np.testing.assert_allclose(out, gelu @ kernel_out + bias_out, atol=1e-5)
    assert config_roundtrip(layer).activation == "gelu_tanh"


def test_attention_defaults_keep_berts_weights():
    layer = MultiHeadAttention(num_heads=2, head_size=4)
    layer(normal(1, 3, 8))
    shapes = {w.path.split("/", 1)[1]: tuple(w.shape) for w in layer.weights}
    assert shapes == {"query/kernel": (8, 2, 4), "query/bias": (2, 4),
                      "key/kernel": (8, 2, 4), "key/bias": (2, 4),
                      "value/kernel": (8, 2, 4), "value/bias": (2, 4),
                      "output/kernel": (2, 4, 8), "output/bias": (8,)}


@pytest.mark.parametrize("rotary", [False, True])
def test_grouped_query_attention_equals_full_attention_with_repeated_heads(rotary):
    def attention(kv_heads):
        return MultiHeadAttention(
            num_heads=6, head_size=4, num_key_value_heads=kv_heads,
            rotary_embedding=RotaryEmbedding() if rotary else None)

    grouped, full = attention(2), attention(6)
    x = normal(2, 5, 12)
    mask = np.array([[0, 1, 1, 1, 1], [1, 1, 1, 1, 1]])[:, None, :]
    positions = np.array([[0, 0, 1, 2, 3], [0, 1, 2, 3, 4]])
    grouped(x)
    full(x)
    assert grouped.key_dense.kernel.shape == (12, 2, 4)
    grouped_weights = {w.path.split("/", 1)[1]: w.numpy() for w in grouped.weights}
    for weight in full.weights:
        name = weight.path.split("/", 1)[1]
        value = grouped_weights[name]
        # Query heads 0-2 read key/value head 0, heads 3-5 head 1.
        weight.assign(np.repeat(value, 3, axis=-2) if name.startswith(("key", "value"))
                      else value)
    kwargs = dict(attention_mask=mask, use_causal_mask=True, positions=positions)
    np.testing.assert_allclose(grouped(x, **kwargs), full(x, **kwargs), atol=1e-5)
    clone = config_roundtrip(grouped)
    assert clone.num_key_value_heads == 2
    assert (clone.rotary_embedding is not None) == rotary


def test_grouped_heads_must_divide_the_query_heads():
    with pytest.raises(ValueError, match="multiple of num_key_value_heads"):
        MultiHeadAttention(num_heads=6, head_size=4, num_key_value_heads=4)


def block_kinds():
    return {
        "gpt2": dict(norm="layer_norm", feed_forward="gelu_mlp"),
        "llama": dict(norm="rms_norm", feed_forward="swiglu", use_bias=False,
                      num_key_value_heads=2, rotary_max_wavelength=10000.0),
    }


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_cached_steps_equal_the_full_causal_pass_with_left_padding(kind):
    block = TransformerDecoderBlock(num_heads=4, intermediate_size=32,
                                    **block_kinds()[kind])
    x = normal(2, 7, 16)
    mask = np.array([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])
    positions = np.maximum(np.cumsum(mask, 1) - 1, 0)
    full = block(x, padding_mask=mask, positions=positions)

    cache = empty_cache(2, 7, block.num_key_value_heads, 4)
    prompt = 3
    prefix, cache = block(x[:, :prompt], padding_mask=mask, positions=positions[:, :prompt],
                          cache=cache, cache_update_index=0)
    outputs = [prefix]
    for i in range(prompt, 7):
        step, cache = block(x[:, i:i + 1], padding_mask=mask, positions=positions[:, i:i + 1],
                            cache=cache, cache_update_index=i)
        outputs.append(step)
    cached = np.concatenate(outputs, axis=1)
    real = mask.astype(bool)  # a padding query attends to nothing: its output is noise
    np.testing.assert_allclose(cached[real], np.asarray(full)[real], atol=1e-5)


def test_cached_step_graph_has_no_xla_op():
    block = TransformerDecoderBlock(num_heads=4, intermediate_size=32,
                                    **block_kinds()["llama"])
    block(normal(1, 2, 16))

    @tf.function
    def step(x, cache, index):
        return block(x, cache=cache, cache_update_index=index)

    graph = step.get_concrete_function(
        tf.TensorSpec([None, 1, 16]), tf.TensorSpec([None, 2, 8, 2, 4]),
        tf.TensorSpec([], tf.int32)).graph
    op_types = {op.type for op in graph.get_operations()}
    assert not any(t.startswith("Xla") for t in op_types)
    assert "TensorScatterUpdate" in op_types


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_decoder_block_is_causal_ignores_padding_and_round_trips(kind):
    block = TransformerDecoderBlock(num_heads=4, intermediate_size=32, dropout=0.0,
                                    **block_kinds()[kind])
    x = normal(2, 6, 16)
    mask = np.array([[1, 1, 1, 1, 0, 0], [1] * 6])
    out = block(x, padding_mask=mask)
    assert out.shape == (2, 6, 16)
    changed = x.copy()
    changed[:, 4:] = 5.0  # row 0's padding, row 1's last two tokens
    np.testing.assert_allclose(out[:, :4], block(changed, padding_mask=mask)[:, :4],
                               atol=1e-5)
    clone = config_roundtrip(block)
    clone(x)
    assert clone.count_params() == block.count_params()
    names = {w.path.split("/")[1] for w in block.weights}
    assert names == {"self_attention_norm", "self_attention", "feed_forward_norm",
                     "feed_forward"}


def test_decoder_block_refuses_unknown_kinds():
    with pytest.raises(ValueError, match="norm must be one of"):
        TransformerDecoderBlock(2, 8, norm="batch_norm")
    with pytest.raises(ValueError, match="feed_forward must be one of"):
        TransformerDecoderBlock(2, 8, feed_forward="geglu")


def test_mixed_precision_block_with_cache():
    block = TransformerDecoderBlock(num_heads=4, intermediate_size=32,
                                    dtype="mixed_bfloat16", **block_kinds()["llama"])
    x = tf.cast(normal(2, 3, 16), tf.bfloat16)
    cache = empty_cache(2, 5, 2, 4, "bfloat16")
    out, cache = block(x, cache=cache, cache_update_index=0)
    assert out.dtype == tf.bfloat16 and cache.dtype == tf.bfloat16
    assert np.isfinite(tf.cast(out, tf.float32)).all()
    assert keras.ops.any(cache[:, :, :3] != 0) and not keras.ops.any(cache[:, :, 3:] != 0)
