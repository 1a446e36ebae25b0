"""What every serving signature does with its inputs before its own work: the raw-text
input specs, the check that a request's inputs have one row each per row of the
first (TF Serving takes them as sent, so "3 prompts, 2 temperatures" must be an
InvalidArgument naming both, not a reshape failure deep inside decoding), and the
clamping of per-row settings into their ranges.

    @signature(PROMPT, TEMPERATURE)
    def generate(prompt, temperature): ...
"""
import functools
import inspect

import tensorflow as tf

TEXT = tf.TensorSpec([None], tf.string, name="text")
TEXT_B = tf.TensorSpec([None], tf.string, name="text_b")
QUESTION = tf.TensorSpec([None], tf.string, name="question")
CONTEXT = tf.TensorSpec([None], tf.string, name="context")
# Beam search's GNMT length penalty alpha: further out, ((5 + length) / 6) ** alpha
# overflows or underflows float32 and every hypothesis scores the same (or -inf).
LENGTH_PENALTY_RANGE = (-10.0, 10.0)


def signature(*specs):
    """Decorator: the function of the inputs `specs` (TensorSpecs [None, ...], named
    as the request names them) as a serving signature, a tf.function whose inputs
    are first checked to have the rows of the first; otherwise the call fails with
    InvalidArgument "<first> and <other> must have the same number of rows"."""
    first, others = specs[0].name, [spec.name for spec in specs[1:]]

    def decorate(function):
        parameters = inspect.signature(function)

        # wraps: the signature keeps the function's parameters, so Python callers
        # may pass inputs by name.
        @functools.wraps(function)
        def checked(*args, **kwargs):
            inputs = list(parameters.bind(*args, **kwargs).arguments.values())
            rows = tf.shape(inputs[0])[0]
            checks = [tf.debugging.assert_equal(
                tf.shape(value)[0], rows,
                message=f"{first} and {name} must have the same number of rows")
                for name, value in zip(others, inputs[1:])]
            with tf.control_dependencies(checks):
                return function(*[tf.identity(value) for value in inputs])

        return tf.function(checked, input_signature=list(specs))

    return decorate


def clamped(values, low=None, high=None):
    """Per-row settings [N] clipped to [low, high] (either may be None); a float NaN
    reads as 0 first, so a NaN setting is the 0 of its range (clipped into it)."""
    if values.dtype.is_floating:
        values = tf.where(tf.math.is_nan(values), tf.zeros_like(values), values)
    if low is not None:
        values = tf.maximum(values, tf.cast(low, values.dtype))
    if high is not None:
        values = tf.minimum(values, tf.cast(high, values.dtype))
    return values
