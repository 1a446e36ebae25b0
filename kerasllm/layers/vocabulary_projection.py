"""Hidden states times a vocabulary matrix, as one 2-D matmul; the matrix of a layer
that Keras may have quantized."""
import keras
import tensorflow as tf
from keras import ops


def float_matrix(layer):
    """The vocabulary matrix `layer` holds, as stored and in float: an Embedding's
    table [vocab, hidden] or a Dense / EinsumDense "...d,de->...e" kernel
    [hidden, vocab].

    Read here rather than as `embeddings` / `kernel`, which after Keras'
    quantize("int8") (see kerasllm.models.quantization) are the int8 values
    round(w * scale), one scale per vocabulary entry: those are divided back.
    """
    if isinstance(layer, keras.layers.Embedding):
        matrix, scale_name = layer.embeddings, "embeddings_scale"
    else:
        matrix, scale_name = layer.kernel, "kernel_scale"
    mode = layer.quantization_mode
    if mode is None:
        return matrix
    if mode != "int8":
        raise ValueError(f"{layer.path} is quantized to {mode}; its vocabulary matrix "
                         "is read for int8 only")
    scale = ops.reshape(getattr(layer, scale_name), [-1])
    if isinstance(layer, keras.layers.Embedding):
        scale = ops.expand_dims(scale, -1)  # per row of the table
    return ops.divide(ops.cast(matrix, layer.compute_dtype), ops.cast(scale, layer.compute_dtype))


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
