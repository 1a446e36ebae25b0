"""What the tasks' Python methods (generate, translate, classify, ...) do with the
values a caller passes: one string or a list of strings in, string tensors to the
shared signature functions, and back: Python strings, lists and NumPy arrays, one
result for one string."""
import numpy as np
import tensorflow as tf

from kerasllm.errors import DataError


def text_batch(texts, name="texts"):
    """(tf.string [N], whether `texts` was a single string) of a str, bytes, or a
    list/tuple/array of them.

    Raises:
      DataError: not strings, or bytes that are not UTF-8.
    """
    single = isinstance(texts, (str, bytes))
    rows = [texts] if single else list(np.asarray(texts, dtype=object).reshape(-1))
    for index, row in enumerate(rows):
        if isinstance(row, bytes):
            try:
                row.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{name}[{index}] is not UTF-8 ({error.reason} at byte "
                                f"{error.start}); pass str or UTF-8 bytes") from None
        elif not isinstance(row, str):
            raise DataError(f"{name} must be a string or a list of strings; {name}[{index}] "
                            f"is a {type(row).__name__}")
    return tf.constant(rows, tf.string, shape=[len(rows)]), single


def per_row(value, rows, dtype, name):
    """A setting as a tensor [rows]: one value for every row, or one per row."""
    values = np.asarray(value)
    if values.ndim == 0:
        values = np.full([rows], values)
    if values.shape != (rows,):
        raise DataError(f"{name} has {values.size} values for {rows} texts; pass one, or one "
                        "per text")
    return tf.constant(values.astype(dtype.as_numpy_dtype if dtype != tf.string else object),
                       dtype)


def python_value(value):
    """A signature output as Python/NumPy: strings decoded, other tensors as arrays."""
    array = value.numpy() if hasattr(value, "numpy") else np.asarray(value)
    if array.dtype == object:
        decoded = np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(array)
        return decoded.tolist() if decoded.ndim else decoded.item()
    return array


def unbatched(outputs, single):
    """`outputs` ({name: value [N, ...]} or one value [N, ...]) with each value's first
    row alone when the call passed a single string."""
    if not single:
        return outputs
    if isinstance(outputs, dict):
        return {name: value[0] for name, value in outputs.items()}
    return outputs[0]
