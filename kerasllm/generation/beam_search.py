"""Beam search: the n best continuations of each prompt, ranked by log-probability
over the GNMT length penalty ((5 + length) / 6) ** alpha (Wu et al., 2016).

Each row keeps `num_beams` live hypotheses and the `num_beams` best finished ones
(ended by a stop token, or at max_new_tokens). Every step extends each live beam
by every token: continuations by a stop token that rank among the `num_beams`
best of all continuations are offered to the finished set, the best `num_beams`
others become the new live beams, and the model's cache
follows them (`reorder_beams`). A row is done when even its best live beam,
losing no more probability, could not score above its worst finished hypothesis;
the loop ends when every row is done or at max_new_tokens.

The step function is the one `kerasllm.generation.decode` describes. The prompt is
prefilled once per row, then the cache is repeated per beam (`repeat_for_beams`).
Tensors the step reads but never changes, such as a seq2seq encoder's outputs and
padding mask, go in `context`: computed once, repeated per beam once, never
reordered (a row's beams share them), passed as step(..., context=context).
Tensors no row owns go in `weights`, as in `generate`: never repeated.
"""
from typing import NamedTuple

import tensorflow as tf

from kerasllm.generation.row_settings import dimension, per_row
from kerasllm.generation.decode import call_step
from kerasllm.generation.errors import GenerationError


class BeamSearchOutput(NamedTuple):
    """What `beam_search` returns, best hypothesis first.

    Fields:
      token_ids: int32 [B, num_beams, max_new_tokens], pad_id after each
        hypothesis (a stop token that ended it included).
      scores: float32 [B, num_beams], log-probability / length_penalty(length);
        -inf for an empty entry (when fewer hypotheses exist).
      lengths: int32 [B, num_beams], 0 for an empty entry.
    Take [:, :n] for the n best.
    """
    token_ids: tf.Tensor
    scores: tf.Tensor
    lengths: tf.Tensor


class _Beams(NamedTuple):
    live_ids: tf.Tensor           # int32 [B, W, T]
    live_scores: tf.Tensor        # float32 [B, W], log-probabilities, best first
    finished_ids: tf.Tensor       # int32 [B, W, T]
    finished_scores: tf.Tensor    # float32 [B, W], penalised, best first
    finished_lengths: tf.Tensor   # int32 [B, W]
    done: tf.Tensor               # bool [B]


def length_penalty(length, alpha):
    """float32 ((5 + length) / 6) ** alpha; length and alpha broadcast."""
    return ((5.0 + tf.cast(length, tf.float32)) / 6.0) ** alpha


def repeat_for_beams(tree, num_beams):
    """Every tensor of `tree` [B, ...] as [B * num_beams, ...]: row b * num_beams + w
    is row b, for each beam w."""
    return tf.nest.map_structure(
        lambda tensor: tf.repeat(tensor, num_beams, axis=0), tree)


def reorder_beams(tree, source_beams):
    """Every tensor of `tree` [B * W, ...] with row b * W + w replaced by row
    b * W + source_beams[b, w]; source_beams int32 [B, W]."""
    batch_size, num_beams = dimension(source_beams, 0), dimension(source_beams, 1)
    rows = tf.reshape(source_beams + num_beams * tf.range(batch_size)[:, None], [-1])
    return tf.nest.map_structure(lambda tensor: tf.gather(tensor, rows, axis=0), tree)


def beam_search(step, init_cache, prompts, max_new_tokens, num_beams, *,
                length_penalty_alpha=0.0, stop_token_ids=(), pad_id=0, context=None,
                beams_per_row=None, max_new_tokens_per_row=None, weights=None):
    """The `num_beams` best continuations of every prompt.

    Args:
      step, init_cache: the model (see kerasllm.generation.decode).
      prompts: `kerasllm.generation.prompts.Prompts`, left-padded [B, L].
      max_new_tokens: Python int >= 1.
      num_beams: Python int >= 1, W: the widest search (it sizes the tensors).
      length_penalty_alpha: float, shared or [B] per row; 0 ranks by
        log-probability alone, larger values favour longer hypotheses.
      stop_token_ids: int [S] for every row or [B, S] per row, -1 = none.
      pad_id: what fills token_ids after each hypothesis.
      context: None, or a nest of tensors [B, ...] passed to every step call as
        `context`, [B * W, ...] after the prefill.
      beams_per_row: None, or int [B] (or a scalar): each row's own beam width,
        clipped to [1, num_beams]. A row of width w searches exactly as with
        num_beams=w (its other beams stay empty) and returns w hypotheses, the
        rest of its output empty; rows of different widths batch together.
      max_new_tokens_per_row: None, or int [B] (or a scalar): each row's own
        longest hypothesis, clipped to [1, max_new_tokens].
      weights: None, or a nest of tensors passed to every step call as `weights`
        (see kerasllm.generation.decode).
    Returns:
      BeamSearchOutput.
    """
    for name, value in (("max_new_tokens", max_new_tokens), ("num_beams", num_beams)):
        if not isinstance(value, int) or value < 1:
            raise GenerationError(f"{name} must be a Python int >= 1, got {value!r}")
    token_ids = tf.cast(prompts.token_ids, tf.int32)
    batch_size, prompt_width = dimension(token_ids, 0), dimension(token_ids, 1)
    alpha = per_row(length_penalty_alpha, batch_size, 0, tf.float32)
    widths = tf.clip_by_value(
        per_row(num_beams if beams_per_row is None else beams_per_row, batch_size, 0,
                tf.int32), 1, num_beams)
    # [B, W]: which of the W beam (and finished) slots a row uses.
    in_width = tf.range(num_beams)[None, :] < widths[:, None]
    worst_kept = widths - 1
    limits = tf.clip_by_value(
        per_row(max_new_tokens if max_new_tokens_per_row is None else max_new_tokens_per_row,
                batch_size, 0, tf.int32), 1, max_new_tokens)
    stop_token_ids = per_row(stop_token_ids, batch_size, 1, tf.int32)

    key_mask = tf.concat(
        [prompts.key_mask, tf.ones([batch_size, max_new_tokens - 1], tf.int32)], axis=1)
    cache = init_cache(batch_size, prompt_width + max_new_tokens - 1)
    logits, cache = call_step(step, token_ids, cache, tf.constant(0), prompts.positions,
                              key_mask, context=context, weights=weights)
    key_mask, lengths, cache, logits = repeat_for_beams(
        (key_mask, prompts.lengths, cache, logits[:, -1]), num_beams)
    if context is not None:
        context = repeat_for_beams(context, num_beams)

    def advance(t, logits, beams, cache):
        """Beams and cache after choosing token t from logits [B * W, V]."""
        vocab = logits.shape[-1]
        log_probs = tf.reshape(tf.nn.log_softmax(tf.cast(logits, tf.float32)),
                               [batch_size, num_beams, vocab])
        totals = beams.live_scores[:, :, None] + log_probs
        columns = tf.range(max_new_tokens)[None, None, None, :] == t

        # Hypotheses ending here: a live beam followed by a stop token, when that
        # continuation ranks among the row's best `width` of all continuations
        # (as in fairseq). Offering every one, however unlikely, would let one beam
        # finish on a token greedy decoding would never pick.
        per_beam = min(num_beams, vocab)
        best_totals = tf.math.top_k(
            tf.reshape(tf.math.top_k(totals, k=per_beam)[0], [batch_size, -1]),
            k=num_beams)[0]
        rank_bar = tf.gather(best_totals, worst_kept, batch_dims=1)
        stops = tf.broadcast_to(stop_token_ids[:, None, :],
                                [batch_size, num_beams, dimension(stop_token_ids, 1)])
        stop_totals = tf.gather(totals, tf.maximum(stops, 0), batch_dims=2)
        ending_scores = tf.where((stops >= 0) & (stop_totals >= rank_bar[:, None, None]),
                                 stop_totals, float("-inf"))
        ending_scores = tf.reshape(
            ending_scores / length_penalty(t + 1, alpha)[:, None, None], [batch_size, -1])
        ending_ids = tf.reshape(
            tf.where(columns, stops[:, :, :, None], beams.live_ids[:, :, None, :]),
            [batch_size, -1, max_new_tokens])

        # The new live beams: the best continuations by any other token.
        is_stop = tf.reduce_any(tf.one_hot(stop_token_ids, vocab) > 0, axis=1)
        continuing = tf.where(is_stop[:, None, :], float("-inf"), totals)
        # The best num_beams continuations are among the best num_beams of each beam.
        # Two small top-k: XLA on CPU compiles one over num_beams * vocab to a full
        # sort, ~60x slower.
        beam_best_scores, beam_best_tokens = tf.math.top_k(continuing, k=per_beam)
        live_scores, best = tf.math.top_k(
            tf.reshape(beam_best_scores, [batch_size, num_beams * per_beam]), k=num_beams)
        live_scores = tf.where(in_width, live_scores, float("-inf"))
        source_beams = best // per_beam
        tokens = tf.gather(tf.reshape(beam_best_tokens, [batch_size, -1]), best, batch_dims=1)
        live_ids = tf.where(columns[:, :, 0], tokens[:, :, None],
                            tf.gather(beams.live_ids, source_beams, batch_dims=1))
        # At the last step the live beams are complete hypotheses too.
        last = t == limits - 1
        complete_scores = tf.where(last[:, None],
                                   live_scores / length_penalty(limits, alpha)[:, None],
                                   float("-inf"))

        candidate_scores = tf.where(beams.done[:, None], float("-inf"),
                                    tf.concat([ending_scores, complete_scores], axis=1))
        # Ties keep the hypotheses already finished: they come first.
        scores = tf.concat([beams.finished_scores, candidate_scores], axis=1)
        ids = tf.concat([beams.finished_ids, ending_ids, live_ids], axis=1)
        hypothesis_lengths = tf.concat([beams.finished_lengths,
                                        tf.fill(tf.shape(ending_scores), t + 1),
                                        tf.broadcast_to(limits[:, None],
                                                        tf.shape(complete_scores))],
                                       axis=1)
        finished_scores, kept = tf.math.top_k(scores, k=num_beams)
        finished_scores = tf.where(in_width, finished_scores, float("-inf"))

        # A live beam's log-probability only falls, so its best reachable score is
        # at the length with the largest penalty (the longest, for alpha >= 0).
        largest_penalty = tf.maximum(length_penalty(t + 2, alpha),
                                     length_penalty(limits, alpha))
        done = beams.done | last | (live_scores[:, 0] / largest_penalty
                                    <= tf.gather(finished_scores, worst_kept, batch_dims=1))
        return _Beams(live_ids, live_scores, tf.gather(ids, kept, batch_dims=1),
                      finished_scores, tf.gather(hypothesis_lengths, kept, batch_dims=1),
                      done), reorder_beams(cache, source_beams)

    def keep_going(t, beams, cache):
        return (t < max_new_tokens) & ~tf.reduce_all(beams.done)

    def next_token(t, beams, cache):
        logits, cache = call_step(
            step, tf.reshape(tf.gather(beams.live_ids, [t - 1], axis=2), [-1, 1]), cache,
            prompt_width + t - 1, (lengths + t - 1)[:, None], key_mask, context=context,
            weights=weights)
        beams, cache = advance(t, logits[:, -1], beams, cache)
        return t + 1, beams, cache

    # Only beam 0 is live at first: its copies would fill the beams with duplicates.
    first_live_scores = tf.concat([[0.0], tf.fill([num_beams - 1], float("-inf"))], 0)
    empty_ids = tf.fill([batch_size, num_beams, max_new_tokens], pad_id)
    start = _Beams(empty_ids, tf.tile(first_live_scores[None, :], [batch_size, 1]),
                   empty_ids, tf.fill([batch_size, num_beams], float("-inf")),
                   tf.zeros([batch_size, num_beams], tf.int32),
                   tf.zeros([batch_size], tf.bool))
    first = advance(tf.constant(0), logits, start, cache)
    _, beams, _ = tf.while_loop(keep_going, next_token, (tf.constant(1), *first))
    found = beams.finished_scores > float("-inf")
    return BeamSearchOutput(tf.where(found[:, :, None], beams.finished_ids, pad_id),
                            beams.finished_scores,
                            tf.where(found, beams.finished_lengths, 0))
