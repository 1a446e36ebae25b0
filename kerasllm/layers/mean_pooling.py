"""Sentence embeddings: the mask-weighted mean of token outputs, L2-normalised."""
from keras import ops

# Smallest norm divided by: an all-padding row (mean 0) stays 0 rather than NaN.
_EPSILON = 1e-12


def sentence_embedding(sequence_output, padding_mask):
    """Mean of the real tokens' outputs, scaled to unit length.

    This is how sentence-transformers models such as all-MiniLM-L6-v2 were
    trained to be used: cosine similarity of two embeddings is their dot
    product. Padding positions carry arbitrary values and get zero weight.

    Args:
      sequence_output: float [batch, seq, hidden].
      padding_mask: int/bool [batch, seq], 1 = real token.
    Returns:
      float32 [batch, hidden]; an all-padding row gives zeros.
    """
    weights = ops.expand_dims(ops.cast(padding_mask, "float32"), -1)
    summed = ops.sum(ops.cast(sequence_output, "float32") * weights, axis=1)
    # A count clamped to 1 only matters for all-padding rows, whose sum is 0.
    mean = summed / ops.maximum(ops.sum(weights, axis=1), 1.0)
    return mean / ops.maximum(ops.norm(mean, axis=-1, keepdims=True), _EPSILON)
