"""Byte-pair merging in TF graph ops, for all words of a batch at once.

BPE turns a word (its bytes, as token ids) into tokens by repeatedly merging the
adjacent pair of tokens with the best (lowest) merge rank, until no adjacent pair
has a merge. Where the best pair occurs more than once in a word, every
occurrence is merged, left to right, skipping one that overlaps the occurrence
just merged ("a a a" -> "aa a"). This is what GPT-2's encoder and Hugging Face's
BPE do for merge lists in which a merge always ranks after the merges that make
its two parts (true of every trained BPE: a part must exist before it is paired).

Here one `tf.while_loop` step applies that rule to every word: look up the rank
of every adjacent pair (a hash table keyed by left id * vocab_size + right id),
take each word's best rank, merge its non-overlapping occurrences. The loop ends
when no word has a pair to merge, after as many steps as the word needing the
most merge rounds; words that finish early cost a lookup per step. Words of text
need a few to ~20 rounds, but a word of n bytes may need ~n/2, each costing
O(n): one 20,000-letter "word" without spaces takes ~1.4 s (1,000 letters: 65 ms),
where Hugging Face's heap-based merging takes milliseconds.
"""
import tensorflow as tf

# The rank of a pair that has no merge: larger than every real rank.
NO_MERGE = tf.int64.max


def pair_keys(left, right, vocab_size):
    """The hash-table key of each pair of token ids (int64, unique per pair)."""
    return tf.cast(left, tf.int64) * vocab_size + tf.cast(right, tf.int64)


def _merge_step(ids, lengths, pair_ranks, merged_ids, vocab_size):
    """One round on flat `ids` [n] of words with `lengths` [words]; returns the new
    (ids, lengths, whether anything was merged)."""
    num_words = tf.size(lengths, out_type=tf.int64)
    word = tf.repeat(tf.range(num_words), lengths)
    position = tf.range(tf.size(ids, out_type=tf.int64))
    # Pair i is (ids[i], ids[i + 1]); it exists when both are in the same word.
    # tf.roll keeps every array [n], also for n = 0.
    is_pair = (tf.equal(word, tf.roll(word, -1, 0))
               & (position < tf.size(ids, out_type=tf.int64) - 1))
    ranks = tf.where(is_pair, pair_ranks.lookup(pair_keys(ids, tf.roll(ids, -1, 0), vocab_size)),
                     NO_MERGE)
    best = tf.math.unsorted_segment_min(ranks, word, num_words)
    is_best = (ranks < NO_MERGE) & tf.equal(ranks, tf.gather(best, word))
    # Occurrences of one pair overlap only for pairs like "a a"; in a chain of
    # overlapping occurrences the 1st, 3rd, ... are merged.
    chain_starts = is_best & ~tf.roll(is_best, 1, 0)
    chain = tf.cumsum(tf.cast(chain_starts, tf.int64))
    chain_start = tf.math.segment_max(tf.where(chain_starts, position, -1), chain)
    merged = is_best & tf.equal((position - tf.gather(chain_start, chain)) % 2, 0)
    # The left token of a merged pair becomes the merge's token; the right one goes.
    new_ids = tf.gather(merged_ids, tf.where(merged, ranks, 0))
    ids = tf.boolean_mask(tf.where(merged, new_ids, ids), ~tf.roll(merged, 1, 0))
    lengths = lengths - tf.math.unsorted_segment_sum(tf.cast(merged, tf.int64), word, num_words)
    return ids, lengths, tf.reduce_any(merged)


def merge_words(symbols, pair_ranks, merged_ids, vocab_size):
    """Applies the merges to every word.

    Args:
      symbols: int32 RaggedTensor [words, (symbols)], each word's byte tokens.
      pair_ranks: tf.lookup table, pair_keys(left, right) -> int64 rank, with
        default NO_MERGE.
      merged_ids: int32 [merges], the token id each merge makes, by rank.
      vocab_size: python int, the factor in pair_keys.

    Returns:
      int32 RaggedTensor [words, (tokens)].
    """
    def step(ids, lengths, _):
        return _merge_step(ids, lengths, pair_ranks, merged_ids, vocab_size)

    ids, lengths, _ = tf.while_loop(
        lambda ids, lengths, more: more, step,
        (symbols.flat_values, symbols.row_lengths(), tf.constant(True)),
        shape_invariants=(tf.TensorShape([None]), tf.TensorShape([None]),
                          tf.TensorShape([])))
    return tf.RaggedTensor.from_row_lengths(ids, lengths, validate=False)
