"""The raw-text inputs of serving signatures, and the check that paired inputs have
as many rows as each other."""
import tensorflow as tf

TEXT = tf.TensorSpec([None], tf.string, name="text")
TEXT_B = tf.TensorSpec([None], tf.string, name="text_b")
QUESTION = tf.TensorSpec([None], tf.string, name="question")
CONTEXT = tf.TensorSpec([None], tf.string, name="context")


def same_rows(first, second, names):
    """`second`, once the graph has checked it has the rows of `first` (a server
    request may send paired inputs of different lengths); `names` ("text", "text_b")
    go into the error message."""
    with tf.control_dependencies([tf.debugging.assert_equal(
            tf.shape(first), tf.shape(second),
            message=f"{names[0]} and {names[1]} must have the same number of rows")]):
        return tf.identity(second)
