"""Projecting a decoder's hidden states onto the vocabulary: through its own head, or
through the token embedding table (tied embeddings)."""
import tensorflow as tf
from keras import ops

from kerasllm.layers.vocabulary_projection import float_matrix, project


def vocabulary_logits(sequence_output, token_embedding, lm_head=None,
                      decoding_weights=None):
    """float32 [batch, seq, vocab]: `lm_head(sequence_output)` when there is a head,
    else the dot products with every row of `token_embedding`'s table.

    Args:
      sequence_output: float [batch, seq, hidden].
      token_embedding: a keras Embedding, table [vocab, hidden].
      lm_head: None (tied), or a Dense layer mapping [..., hidden] to [..., vocab].
      decoding_weights: None, or `decoding_weights(token_embedding, lm_head)`,
        made earlier: the same logits, through the projection laid out for decoding.
    """
    if decoding_weights is not None:
        return project(sequence_output, decoding_weights["output_projection"],
                       transpose=False)
    if lm_head is not None:
        return ops.cast(lm_head(sequence_output), "float32")
    return project(sequence_output, float_matrix(token_embedding), transpose=True)


def decoding_weights(token_embedding, lm_head=None):
    """{"output_projection": float [hidden, vocab]}, the matrix whose product with
    the hidden states is the logits: lm_head's kernel, or a transposed copy of the
    tied table.

    For decoding, made once per generate call, outside its loop: XLA's CPU backend
    runs the small-batch product with the table as stored ~10-30x slower than with
    this copy, and folds a transpose inside the compiled step back into the product,
    so the copy has to come in from outside the step. An int8 model's matrix is
    dequantized here too, once per call rather than in every step.
    """
    return {"output_projection": (float_matrix(lm_head) if lm_head is not None
                                  else tf.transpose(float_matrix(token_embedding)))}
