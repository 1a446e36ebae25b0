"""Greedy and sampled decoding of a batch of prompts: one prefill, then one token
per step in a single tf.while_loop, up to max_new_tokens or until every row stops.

The model is reached only through a step function:

    step(token_ids, cache, cache_index, positions, key_mask[, weights=weights])
        -> (logits, cache)

      token_ids   int32 [B, n], the tokens for cache slots cache_index .. + n - 1.
      cache       a tensor or nest of tensors with batch first, from
                  init_cache(batch_size, max_length) or the previous step.
      cache_index int32 scalar, the slot of the first of the n tokens (every row).
      positions   int32 [B, n], each token's position in its own row; positions
                  differ from slots by the row's left padding.
      key_mask    int32 [B, max_length], 1 = the slot holds (or will hold) a real
                  token, 0 = left padding; the step hides slots after each token
                  itself (a causal mask over slots).
      weights     only when the caller passes `weights`: a nest of tensors that
                  every step reads and no row owns, such as a weight matrix laid
                  out for decoding (e.g. `GptCausalLM.decoding_weights()`).
      logits      float [B, n, vocab]; cache: the same structure, tokens written.

`weights` are computed by the caller, so once per call, outside the loop, which
they enter as loop inputs: XLA would fold a layout change made inside the step back
into the step's own matmul.

Everything is TensorFlow ops with static shapes inside the loop, so the same code
exports to a SavedModel that TF Serving runs without XLA and compiles with
jit_compile=True in-process (pass it `Prompts` made outside the compiled function,
whose widths are bucketed).
"""
from typing import NamedTuple

import tensorflow as tf

from kerasllm.generation.row_settings import dimension, per_row
from kerasllm.generation.errors import GenerationError
from kerasllm.generation.sampling import sample
from kerasllm.generation.stopping import (align_stop_sequences, is_stop_token,
                                          stop_sequence_length)

# finish_reasons: the row generated its most tokens, generated a stop token, or
# generated a stop sequence.
LENGTH = 0
STOP_TOKEN = 1
STOP_SEQUENCE = 2
_RUNNING = -1  # inside the loop only


class Generated(NamedTuple):
    """What `generate` returns.

    Fields:
      token_ids: int32 [B, max_new_tokens], the new tokens (a stop included),
        pad_id after a row's end.
      lengths: int32 [B], new tokens per row, its stop included.
      finish_reasons: int32 [B], LENGTH, STOP_TOKEN or STOP_SEQUENCE.
      stop_lengths: int32 [B], how many of a row's last tokens are the stop token
        or sequence that ended it (0 for LENGTH): lengths - stop_lengths tokens
        are the answer without it.
      log_probs: float32 [B, max_new_tokens], each new token's log-probability
        under the model itself (the log-softmax of its logits, before temperature,
        top-k or top-p shaped the draw), 0 after a row's end.
      top_ids, top_log_probs: int32 and float32 [B, max_new_tokens, top_logprobs],
        at each step the `top_logprobs` most likely tokens and their
        log-probabilities, most likely first (-1 and 0 after a row's end).
    """
    token_ids: tf.Tensor
    lengths: tf.Tensor
    finish_reasons: tf.Tensor
    stop_lengths: tf.Tensor
    log_probs: tf.Tensor
    top_ids: tf.Tensor
    top_log_probs: tf.Tensor


def generate(step, init_cache, prompts, max_new_tokens, *, temperature=0.0, top_k=0,
             top_p=1.0, seeds=0, stop_token_ids=(), stop_sequences=None,
             stop_sequence_lengths=None, pad_id=0, max_new_tokens_per_row=None,
             top_logprobs=0, weights=None):
    """Continues every prompt by up to `max_new_tokens` tokens.

    Args:
      step, init_cache: the model (see the module docstring).
      prompts: `kerasllm.generation.prompts.Prompts`, left-padded [B, L].
      max_new_tokens: Python int >= 1 (static: it sizes the cache and the output).
      temperature, top_k, top_p, seeds: sampling settings, scalars shared by every
        row or tensors [B] (see `kerasllm.generation.sampling.sample`); the default
        temperature 0 is greedy.
      stop_token_ids: int [S] for every row or [B, S] per row, -1 = none: a row
        stops after generating one of them.
      stop_sequences: int [S, K] or [B, S, K], sequences of ids each followed by -1
        padding (or with `stop_sequence_lengths` [S] or [B, S]): a row stops when
        its new tokens end with one of them.
      pad_id: what fills token_ids after a row's end, and what a row that has
        stopped feeds the step: a valid id.
      max_new_tokens_per_row: None, or int [B] (or a scalar): each row's own most
        new tokens, clipped to [1, max_new_tokens].
      weights: None, or a nest of tensors passed to every step call as `weights`.
    Returns:
      Generated.
    """
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise GenerationError(f"max_new_tokens must be a Python int >= 1, "
                              f"got {max_new_tokens!r}")
    if not isinstance(top_logprobs, int) or top_logprobs < 0:
        raise GenerationError(f"top_logprobs must be a Python int >= 0, got {top_logprobs!r}")
    token_ids = tf.cast(prompts.token_ids, tf.int32)
    batch_size, prompt_width = dimension(token_ids, 0), dimension(token_ids, 1)
    temperature = per_row(temperature, batch_size, 0, tf.float32)
    top_k = per_row(top_k, batch_size, 0, tf.int32)
    top_p = per_row(top_p, batch_size, 0, tf.float32)
    seeds = per_row(seeds, batch_size, 0, tf.int32)
    stop_token_ids = per_row(stop_token_ids, batch_size, 1, tf.int32)
    if stop_sequences is None:
        stop_sequences = tf.zeros([0, 0], tf.int32)
    if stop_sequence_lengths is not None:
        stop_sequence_lengths = per_row(stop_sequence_lengths, batch_size, 1, tf.int32)
    stop_sequences = align_stop_sequences(per_row(stop_sequences, batch_size, 2, tf.int32),
                                          stop_sequence_lengths)
    row_limits = tf.clip_by_value(
        per_row(max_new_tokens if max_new_tokens_per_row is None else max_new_tokens_per_row,
                batch_size, 0, tf.int32), 1, max_new_tokens)

    # The last generated token is never fed back, so it needs no slot.
    key_mask = tf.concat(
        [prompts.key_mask, tf.ones([batch_size, max_new_tokens - 1], tf.int32)], axis=1)
    cache = init_cache(batch_size, prompt_width + max_new_tokens - 1)
    logits, cache = call_step(step, token_ids, cache, tf.constant(0), prompts.positions,
                              key_mask, weights=weights)

    def append(t, logits, generated):
        """`generated` with token t drawn from logits [B, 1 or more, V] (the last)."""
        running = generated.finish_reasons == _RUNNING
        tokens = sample(logits[:, -1], temperature, top_k, top_p, seeds, t)
        tokens = tf.where(running, tokens, pad_id)
        at_t = tf.range(max_new_tokens)[None, :] == t
        new_ids = tf.where(at_t, tokens[:, None], generated.token_ids)
        log_softmax = tf.nn.log_softmax(tf.cast(logits[:, -1], tf.float32))
        log_prob = tf.where(running, tf.gather(log_softmax, tokens, batch_dims=1), 0.0)
        top_log_probs, top_ids = tf.math.top_k(log_softmax, top_logprobs)
        top_ids = tf.where(running[:, None], top_ids, -1)
        top_log_probs = tf.where(running[:, None], top_log_probs, 0.0)
        sequence_length = stop_sequence_length(new_ids, t, stop_sequences)
        at_token = running & is_stop_token(tokens, stop_token_ids)
        at_sequence = running & ~at_token & (sequence_length > 0)
        lengths = generated.lengths + tf.cast(running, tf.int32)
        at_limit = running & (lengths >= row_limits)
        return Generated(
            new_ids, lengths,
            tf.where(at_token, STOP_TOKEN, tf.where(
                at_sequence, STOP_SEQUENCE,
                tf.where(at_limit, LENGTH, generated.finish_reasons))),
            tf.where(at_token, 1,
                     tf.where(at_sequence, sequence_length, generated.stop_lengths)),
            tf.where(at_t, log_prob[:, None], generated.log_probs),
            tf.where(at_t[:, :, None], top_ids[:, None], generated.top_ids),
            tf.where(at_t[:, :, None], top_log_probs[:, None], generated.top_log_probs))

    def keep_going(t, generated, cache):
        # Every row ends by max_new_tokens at the latest: row_limits are clipped.
        return tf.reduce_any(generated.finish_reasons == _RUNNING)

    def next_token(t, generated, cache):
        logits, cache = call_step(step, tf.gather(generated.token_ids, [t - 1], axis=1),
                                  cache, prompt_width + t - 1,
                                  (prompts.lengths + t - 1)[:, None], key_mask,
                                  weights=weights)
        return t + 1, append(t, logits, generated), cache

    zeros = tf.zeros([batch_size], tf.int32)
    nothing_yet = Generated(tf.fill([batch_size, max_new_tokens], pad_id), zeros,
                            tf.fill([batch_size], _RUNNING), zeros,
                            tf.zeros([batch_size, max_new_tokens]),
                            tf.fill([batch_size, max_new_tokens, top_logprobs], -1),
                            tf.zeros([batch_size, max_new_tokens, top_logprobs]))
    _, generated, _ = tf.while_loop(
        keep_going, next_token,
        (tf.constant(1), append(tf.constant(0), logits, nothing_yet), cache))
    return generated


def call_step(step, *args, **optional):
    """step(*args, **optional), leaving out the optional arguments that are None: a
    step need accept only what its callers give."""
    return step(*args, **{name: value for name, value in optional.items()
                          if value is not None})
