"""Decoding settings given once for every row of a batch or one per row (a TF Serving
batch concatenates requests that each carry their own), broadcast to one per row;
and the batch's sizes, static wherever they are known."""
import tensorflow as tf


def dimension(tensor, axis):
    """The size of `tensor` along `axis`: a Python int when it is static, else an
    int32 scalar tensor. Static sizes keep every shape static under XLA, where sizes
    computed at run time become dynamic dimensions that, for one, turn a top-k into
    a full sort."""
    return tensor.shape[axis] if tensor.shape[axis] is not None else tf.shape(tensor)[axis]


def per_row(value, batch_size, row_rank, dtype):
    """`value` as a tensor [batch_size, ...]: either one row's value (rank
    `row_rank`, e.g. a scalar temperature or a stop-id list [S]), which every row
    shares, or one per row (rank row_rank + 1)."""
    value = tf.convert_to_tensor(value)
    row_shape = tf.shape(value)[value.shape.rank - row_rank:]
    return tf.broadcast_to(tf.cast(value, dtype), tf.concat([[batch_size], row_shape], 0))
