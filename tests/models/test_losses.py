"""sparse_cross_entropy: keras' cross-entropy (one-hot, label-smoothed) in value and
gradient, whatever the leading shape, logits dtype or compilation."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.models.losses import sparse_cross_entropy

VOCAB = 37


def keras_reference(targets, logits, smoothing):
    """(smoothed, nll) and their summed weighted gradient by keras' own losses."""
    weights = tf.random.stateless_uniform(targets.shape, [3, 4])
    logits = tf.Variable(tf.cast(logits, tf.float32))
    with tf.GradientTape() as tape:
        smoothed = keras.losses.categorical_crossentropy(
            tf.one_hot(targets, VOCAB), logits, from_logits=True, label_smoothing=smoothing)
        nll = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        objective = tf.reduce_sum(weights * smoothed) + 0.5 * tf.reduce_sum(weights * nll)
    return smoothed, nll, tape.gradient(objective, logits), weights


def ours(targets, logits, smoothing, weights, jit_compile=False):
    logits = tf.Variable(logits)

    @tf.function(jit_compile=jit_compile)
    def run():
        with tf.GradientTape() as tape:
            smoothed, nll, correct = sparse_cross_entropy(targets, logits, smoothing)
            objective = tf.reduce_sum(weights * smoothed) + 0.5 * tf.reduce_sum(weights * nll)
        return smoothed, nll, tape.gradient(objective, logits), correct

    return run()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", [(5,), (2, 3)])
@pytest.mark.parametrize("jit_compile", [False, True])
def test_value_and_gradient_are_keras_cross_entropy(smoothing, shape, jit_compile):
    targets = tf.random.stateless_uniform(shape, [1, 2], 0, VOCAB, tf.int32)
    # Large logits: the softmax must be computed stably.
    logits = 30.0 * tf.random.stateless_normal(shape + (VOCAB,), [5, 6])
    smoothed, nll, grad, weights = keras_reference(targets, logits, smoothing)
    got_smoothed, got_nll, got_grad, got_correct = ours(targets, logits, smoothing, weights, jit_compile)
    assert got_smoothed.shape == shape and got_nll.dtype == tf.float32
    np.testing.assert_allclose(got_smoothed, smoothed, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got_nll, nll, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(got_grad, grad, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got_correct, np.argmax(logits, -1) == targets.numpy())


def test_a_tied_largest_logit_counts_as_correct():
    logits = tf.constant([[1.0, 3.0, 3.0], [0.0, -0.0, -1.0], [2.0, 0.0, 1.0]])
    correct = sparse_cross_entropy(tf.constant([2, 1, 1]), logits).correct
    np.testing.assert_array_equal(correct, [True, True, False])


def test_only_the_loss_used_still_has_a_gradient():
    targets = tf.constant([3, 0, 36])
    logits = tf.Variable(tf.random.stateless_normal((3, VOCAB), [7, 8]))
    with tf.GradientTape() as tape:
        loss = sparse_cross_entropy(targets, logits).loss
        loss = tf.reduce_sum(loss)
    expected = tf.nn.softmax(logits) - tf.one_hot(targets, VOCAB)
    np.testing.assert_allclose(tape.gradient(loss, logits), expected, atol=1e-6)


def test_bfloat16_logits_give_float32_losses():
    targets = tf.constant([[1, 2], [3, 4]])
    logits = tf.random.stateless_normal((2, 2, VOCAB), [9, 9])
    loss, nll, _ = sparse_cross_entropy(targets, tf.cast(logits, tf.bfloat16), 0.1)
    expected, _, _ = sparse_cross_entropy(targets, tf.cast(tf.cast(logits, tf.bfloat16),
                                                        tf.float32), 0.1)
    assert loss.dtype == nll.dtype == tf.float32
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
