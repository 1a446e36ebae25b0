"""Losses and metric reductions the task models use."""
from typing import NamedTuple

import tensorflow as tf
from keras import ops


def masked_mean(values, weights):
    """Weighted mean of `values`; 0 (not NaN) when every weight is 0."""
    weights = ops.cast(weights, "float32")
    return ops.sum(ops.cast(values, "float32") * weights) / ops.maximum(ops.sum(weights), 1.0)


class TokenCrossEntropy(NamedTuple):
    loss: tf.Tensor     # float32 [...], label-smoothed where asked
    nll: tf.Tensor      # float32 [...], the negative log-likelihood
    correct: tf.Tensor  # bool [...], the target's logit is the largest


def sparse_cross_entropy(targets, logits, label_smoothing=0.0):
    """TokenCrossEntropy(loss, nll, correct) of `logits` float [..., vocab] against
    int `targets` [...]: the per-token cross-entropy smoothed towards the uniform
    distribution, i.e. against (1 - label_smoothing) * one_hot(target) +
    label_smoothing / vocab (Szegedy et al., 2016; what keras' label_smoothing does
    to one-hot labels); the unsmoothed negative log-likelihood (`loss` itself
    without smoothing); and whether the target's logit is the largest (a tie
    counts, where an argmax would pick one), for accuracy: keras' argmax on
    TensorFlow costs four extra passes over the logits to order -0.0 before 0.0.

    The softmax over the vocabulary dominates a small model's step (bert_tiny's 320
    masked positions x 30522 logits cost more than its encoder), so the forward
    pass keeps exp(logits - max) for the backward pass, whose gradient,
    softmax - targets, is then one scaled copy with the target entries subtracted
    in place: half the time of tf.nn.sparse_softmax_cross_entropy_with_logits'
    forward and backward on CPU. One-hot targets are never materialised.
    """
    logits = tf.cast(logits, tf.float32)
    shape = tf.shape(targets)
    vocab = tf.shape(logits)[-1]
    flat_logits = tf.reshape(logits, [-1, vocab])
    flat_targets = tf.reshape(tf.cast(targets, tf.int32), [-1])
    loss, nll, correct = _flat_cross_entropy(flat_targets, flat_logits, float(label_smoothing))
    return TokenCrossEntropy(*(tf.reshape(t, shape) for t in (loss, nll, correct)))


def _flat_cross_entropy(targets, logits, smoothing):
    """sparse_cross_entropy over rows: targets int32 [N], logits float32 [N, V]."""
    index = tf.stack([tf.range(tf.shape(targets)[0]), targets], axis=1)

    @tf.custom_gradient
    def cross_entropy(logits):
        peak = tf.reduce_max(logits, axis=-1, keepdims=True)
        exp = tf.exp(logits - peak)
        total = tf.reduce_sum(exp, axis=-1)
        log_normalizer = tf.math.log(total) + peak[:, 0]
        target_logits = tf.gather_nd(logits, index)
        nll = log_normalizer - target_logits
        loss = nll
        if smoothing:
            # Cross-entropy against the uniform distribution: -mean(log_softmax).
            uniform = log_normalizer - tf.reduce_mean(logits, axis=-1)
            loss = (1.0 - smoothing) * nll + smoothing * uniform

        def gradient(d_loss, d_nll, d_correct=None):
            del d_correct  # a boolean has no gradient
            # d nll / d logits = softmax - one_hot; d uniform / d logits = softmax - 1/V.
            d_loss = tf.zeros_like(total) if d_loss is None else d_loss
            d_nll = tf.zeros_like(total) if d_nll is None else d_nll
            grad = exp * ((d_loss + d_nll) / total)[:, None]
            if smoothing:
                vocab = tf.cast(tf.shape(logits)[-1], tf.float32)
                grad -= (smoothing / vocab) * d_loss[:, None]
            return tf.tensor_scatter_nd_sub(grad, index, (1.0 - smoothing) * d_loss + d_nll)

        return (loss, nll, target_logits >= peak[:, 0]), gradient

    return cross_entropy(logits)


class DistillationLoss(NamedTuple):
    loss: tf.Tensor       # float32 [], alpha * soft_loss + (1 - alpha) * hard_loss
    soft_loss: tf.Tensor  # float32 [], T^2 * KL(teacher || student) at temperature T
    hard_loss: tf.Tensor  # float32 [], the student's cross-entropy against the labels


def distillation_loss(student_logits, teacher_logits, labels, temperature, alpha):
    """DistillationLoss of a student's logits against a teacher's (Hinton et al., 2015,
    "Distilling the Knowledge in a Neural Network"), each part a mean over the batch:

        loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
               + (1 - alpha) * cross-entropy(labels, softmax(student))

    The soft part's gradient with respect to the student's logits is
    T * (softmax(student / T) - softmax(teacher / T)), which for large T shrinks
    as 1/T (the differences of the softened probabilities are about the
    differences of the logits over T): the factor T^2 keeps its scale, and so
    the balance `alpha` strikes with the hard part, independent of T. Teacher
    logits matter only up to a constant per row, so its log-probabilities serve
    as well.

    Args:
      student_logits: float [B, C].
      teacher_logits: float [B, C].
      labels: int [B], class ids in [0, C).
      temperature: T > 0.
      alpha: the soft part's weight, in [0, 1] (0: plain cross-entropy, 1: soft
        targets alone).
    """
    student_logits = tf.cast(student_logits, tf.float32)
    teacher_logits = tf.cast(teacher_logits, tf.float32)
    teacher_log_probs = tf.nn.log_softmax(teacher_logits / temperature)
    student_log_probs = tf.nn.log_softmax(student_logits / temperature)
    # Log-softmax stays finite where the teacher's probability underflows to 0, so
    # such classes add 0, not 0 * -inf.
    kl = tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs),
                       axis=-1)
    soft_loss = temperature ** 2 * tf.reduce_mean(kl)
    hard_loss = tf.reduce_mean(sparse_cross_entropy(labels, student_logits).loss)
    return DistillationLoss(alpha * soft_loss + (1.0 - alpha) * hard_loss, soft_loss,
                            hard_loss)
