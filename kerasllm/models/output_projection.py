"""Projecting a decoder's hidden states onto the vocabulary: through its own head, or
through the token embedding table (tied embeddings)."""
import tensorflow as tf
from keras import ops


def vocabulary_logits(sequence_output, token_embedding, lm_head=None):
    """float32 [batch, seq, vocab]: `lm_head(sequence_output)` when there is a head,
    else the dot products with every row of `token_embedding`'s table.

    Args:
      sequence_output: float [batch, seq, hidden].
      token_embedding: a keras Embedding, table [vocab, hidden].
      lm_head: None (tied), or a layer mapping [..., hidden] to [..., vocab].
    """
    if lm_head is not None:
        return ops.cast(lm_head(sequence_output), "float32")
    table = ops.cast(token_embedding.embeddings, sequence_output.dtype)
    hidden = ops.shape(sequence_output)[-1]
    # One 2-D matmul against the table as stored ([vocab, hidden]): neither a
    # transposed copy of the table nor a per-example gradient of a batched matmul.
    flat = tf.matmul(ops.reshape(sequence_output, (-1, hidden)), table, transpose_b=True)
    lead = ops.shape(sequence_output)[:-1]
    return ops.cast(ops.reshape(flat, (*lead, token_embedding.input_dim)), "float32")
