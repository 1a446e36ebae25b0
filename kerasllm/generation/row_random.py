"""Random numbers that belong to a row: each is a hash of (the row's seed, a
counter, a column), so a row draws the same numbers whatever else is in its batch.

TensorFlow's stateless random ops take one seed per call, which would make every
row's draws depend on the batch it was served in (TF Serving concatenates requests)
or need a loop over rows. A hash of integers is a few elementwise uint32 ops,
which every TensorFlow kernel set and XLA have.
"""
import tensorflow as tf

_GOLDEN = 0x9E3779B9  # 2^32 / golden ratio, odd: multiplying by it permutes uint32


def _uint32(value):
    return tf.constant(value, tf.uint32)


def _mix(x):
    """The 32-bit finaliser of MurmurHash3: a bijection of uint32 in which every
    output bit depends on every input bit."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _uint32(16)))
    x = x * _uint32(0x85EBCA6B)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _uint32(13)))
    x = x * _uint32(0xC2B2AE35)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, _uint32(16)))


def row_uniforms(seeds, counter, width):
    """float32 [B, width] uniform in the open interval (0, 1).

    Args:
      seeds: int32 [B], one seed per row.
      counter: int32 scalar, e.g. the decoding step: each value gives new numbers.
      width: int, the number of columns.
    Entry (b, j) depends only on (seeds[b], counter, j).
    """
    row_keys = _mix(_mix(tf.bitcast(tf.cast(seeds, tf.int32), tf.uint32) + _uint32(_GOLDEN))
                    + tf.bitcast(tf.cast(counter, tf.int32), tf.uint32) * _uint32(_GOLDEN))
    columns = _mix(tf.bitcast(tf.range(width), tf.uint32) * _uint32(_GOLDEN) + _uint32(1))
    bits = _mix(tf.bitwise.bitwise_xor(row_keys[:, None], columns[None, :]))
    # 23 bits and a half-step offset: the result is exact in float32, never 0
    # (its log is taken) and never 1 (nor is the log of the log).
    high_bits = tf.cast(tf.bitwise.right_shift(bits, _uint32(9)), tf.float32)
    return (high_bits + 0.5) * 2.0 ** -23
