"""Hidden states times a vocabulary matrix, as one 2-D matmul."""
import tensorflow as tf
from keras import ops


def project(hidden_states, matrix, transpose):
    """float32 [..., vocab]: hidden_states [..., hidden] times `matrix` [hidden, vocab],
    or, with `transpose`, times the transpose of `matrix` stored [vocab, hidden] (a
    token table as it is, so that training makes neither a transposed copy of the
    table nor of its gradient).

    Leading axes are flattened first: Keras' matmul of a 3-D by a 2-D tensor is a
    tensordot that transposes the table and takes a per-example gradient.
    """
    matrix = ops.cast(matrix, hidden_states.dtype)
    hidden = ops.shape(hidden_states)[-1]
    flat = tf.matmul(ops.reshape(hidden_states, (-1, hidden)), matrix, transpose_b=transpose)
    lead = ops.shape(hidden_states)[:-1]
    vocab = ops.shape(matrix)[0 if transpose else 1]
    return ops.cast(ops.reshape(flat, (*lead, vocab)), "float32")
