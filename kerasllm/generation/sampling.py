"""The next token of each row from its logits, with the row's own settings: greedy,
temperature, top-k and top-p (nucleus) sampling, reproducible from the row's seed.

Every setting is a tensor [B]: a TF Serving batch concatenates requests that each
carry their own. A row samples by the Gumbel-max trick, the argmax of its scaled
logits plus Gumbel noise over the tokens its filters keep, so an excluded token
can never be drawn; the noise comes from `row_random`, so a row's draw depends only
on its logits, its settings, its seed and the step.
"""
import tensorflow as tf

from kerasllm.generation.row_random import row_uniforms

# The filters are computed from the 256 most likely tokens (a partial sort, ~15x
# cheaper than sorting a 50k vocabulary); only when some row's top-k or nucleus
# reaches past them, from the 4096 most likely, and past those from a full sort.
CANDIDATES = (256, 4096)


def sample(logits, temperature, top_k, top_p, seeds, counter, candidates=CANDIDATES):
    """int32 [B]: one token per row.

    Args:
      logits: float [B, V], V static.
      temperature: float [B]; <= 0 takes the argmax (greedy) and ignores the rest.
      top_k: int [B]; keep the top_k most likely tokens, 0 = all.
      top_p: float [B]; of those, keep the fewest most likely whose probability
        (renormalised over the top_k) reaches top_p, 1.0 = all.
      seeds: int [B]; with `counter`, the only source of randomness of a row.
      counter: int32 scalar; a new value draws new noise (e.g. the step).
      candidates: increasing numbers of most likely tokens to compute the filters
        from, each tried when the last did not hold some row's kept tokens, before
        a full sort.
    Tokens tied with the last one kept are kept too; probabilities are those of
    logits / temperature.
    """
    logits = tf.cast(logits, tf.float32)
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
    sampled = tf.cast(temperature, tf.float32) > 0.0

    def draw():
        scaled = logits / tf.where(sampled, tf.cast(temperature, tf.float32), 1.0)[:, None]
        threshold = _filter_thresholds(scaled, tf.cast(top_k, tf.int32),
                                       tf.cast(top_p, tf.float32), candidates)
        uniforms = row_uniforms(seeds, counter, logits.shape[-1])
        gumbel = -tf.math.log(-tf.math.log(uniforms))
        perturbed = tf.where(scaled >= threshold[:, None], scaled + gumbel, float("-inf"))
        return tf.where(sampled, tf.argmax(perturbed, axis=-1, output_type=tf.int32), greedy)

    # Greedy batches, the common case, skip the sort and the noise.
    return tf.cond(tf.reduce_any(sampled), draw, lambda: greedy)


def _filter_thresholds(scaled, top_k, top_p, candidates):
    """float32 [B]: the lowest scaled logit each row's top-k and top-p keep, -inf
    for rows that keep everything."""
    vocab = scaled.shape[-1]

    def from_most_likely(widths, log_normaliser):
        threshold, resolved = _thresholds_of_sorted(
            tf.math.top_k(scaled, k=widths[0]).values, log_normaliser, top_k, top_p, vocab)
        if len(widths) == 1:
            return threshold
        return tf.cond(tf.reduce_all(resolved), lambda: threshold,
                       lambda: from_most_likely(widths[1:], log_normaliser))

    # Batches with no filter (plain temperature sampling) skip even the partial sort.
    return tf.cond(
        tf.reduce_any((top_k > 0) | (top_p < 1.0)),
        lambda: from_most_likely([width for width in candidates if width < vocab] + [vocab],
                                 tf.reduce_logsumexp(scaled, axis=-1)),
        lambda: tf.fill(tf.shape(top_k), float("-inf")))


def _thresholds_of_sorted(sorted_scaled, log_normaliser, top_k, top_p, vocab):
    """(threshold float32 [B], resolved bool [B]) from the C most likely scaled
    logits, sorted_scaled [B, C]; a row is resolved when its kept tokens end within
    the C (or it keeps everything), else its threshold is wrong."""
    width = sorted_scaled.shape[-1]
    rank = tf.range(width)[None, :]
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab), vocab)
    in_top_k = rank < k[:, None]
    probabilities = tf.exp(sorted_scaled - log_normaliser[:, None])
    top_k_mass = tf.where(k <= width,
                          tf.reduce_sum(tf.where(in_top_k, probabilities, 0.0), axis=-1), 1.0)
    # A token is in the nucleus while the mass before it is short of top_p; the
    # comparison is skipped for top_p >= 1, where rounding could end it early.
    mass_before = tf.cumsum(probabilities, axis=-1, exclusive=True)
    in_nucleus = (top_p[:, None] >= 1.0) | (mass_before < (top_p * top_k_mass)[:, None])
    kept = tf.reduce_sum(tf.cast(in_top_k & in_nucleus, tf.int32), axis=-1)
    threshold = tf.gather(sorted_scaled, tf.maximum(kept, 1) - 1, batch_dims=1)
    keeps_all = (k == vocab) & (top_p >= 1.0)
    resolved = keeps_all | (kept < width) | (k <= width)
    return tf.where(keeps_all, float("-inf"), threshold), resolved
