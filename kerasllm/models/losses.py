"""Losses and metric reductions the task models use."""
import keras
from keras import ops


def masked_mean(values, weights):
    """Weighted mean of `values`; 0 (not NaN) when every weight is 0."""
    weights = ops.cast(weights, "float32")
    return ops.sum(ops.cast(values, "float32") * weights) / ops.maximum(ops.sum(weights), 1.0)


def label_smoothed_cross_entropy(targets, logits, smoothing):
    """(smoothed, nll), each float32 [...]: per-token cross-entropy of `logits`
    float [..., vocab] against int `targets` [...] smoothed towards the uniform
    distribution, i.e. against (1 - smoothing) * one_hot(target) + smoothing / vocab
    (Szegedy et al., 2016; what keras' label_smoothing does to one-hot labels), and
    the unsmoothed negative log-likelihood.

    Never materialises one-hot labels: with vocab 37000 they would outweigh the
    logits' own activations.
    """
    logits = ops.cast(logits, "float32")
    nll = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    if not smoothing:
        return nll, nll
    # Cross-entropy against the uniform distribution: -mean(log_softmax(logits)).
    uniform = ops.logsumexp(logits, axis=-1) - ops.mean(logits, axis=-1)
    return (1.0 - smoothing) * nll + smoothing * uniform, nll
