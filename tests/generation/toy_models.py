"""Tiny deterministic models behind the generation step contract, and the ways the
tests run a decoding function (traced, or compiled with XLA)."""
import itertools

import numpy as np
import tensorflow as tf


def write_slots(cache, values, first_slot):
    """cache int [B, M] with values [B, n] written at slots first_slot .. + n - 1."""
    batch, length = tf.shape(values)[0], tf.shape(values)[1]
    rows = tf.broadcast_to(tf.range(batch)[:, None], [batch, length])
    slots = tf.broadcast_to(first_slot + tf.range(length)[None, :], [batch, length])
    return tf.tensor_scatter_nd_update(cache, tf.stack([rows, slots], -1), values)


class TransitionModel(tf.Module):
    """Logits that depend only on the token fed: table[token] for a table [V, V].
    Its cache is one tensor, the ids written so far [B, max_length]."""

    def __init__(self, table):
        super().__init__()
        self.table = tf.Variable(np.asarray(table, "float32"), trainable=False)

    def init_cache(self, batch_size, max_length):
        return tf.zeros([batch_size, max_length], tf.int32)

    def step(self, token_ids, cache, cache_index, positions, key_mask):
        return tf.gather(self.table, token_ids), write_slots(cache, token_ids, cache_index)


class ContextModel(tf.Module):
    """Logits of a token that depend on every real token before it and on their
    positions, like attention: last[token] + the sum over visible slots of
    history[token at the slot] + position[its position]. Slots are visible when
    key_mask allows and they are not after the token. With integer tables every
    sum is exact, so a row's logits cannot depend on its padding or batch.

    Its cache is a dict: the ids and positions written so far, each [B, max_length].
    With a `context` (per-row bias [B, V]) its step takes one, as a seq2seq
    decoder takes its encoder's outputs.
    """

    def __init__(self, vocab_size, max_position=64, seed=0, integer=False):
        super().__init__()
        rng = np.random.default_rng(seed)

        def table(rows, scale):
            values = rng.normal(size=(rows, vocab_size)) * scale
            return tf.Variable((np.round(values) if integer else values).astype("float32"),
                               trainable=False)

        self.vocab_size = vocab_size
        self.last = table(vocab_size, 3.0)
        self.history = table(vocab_size, 1.0)
        self.position = table(max_position, 1.0)

    def init_cache(self, batch_size, max_length):
        return {"ids": tf.zeros([batch_size, max_length], tf.int32),
                "positions": tf.zeros([batch_size, max_length], tf.int32)}

    def step(self, token_ids, cache, cache_index, positions, key_mask, context=None):
        cache = {"ids": write_slots(cache["ids"], token_ids, cache_index),
                 "positions": write_slots(cache["positions"], positions, cache_index)}
        per_slot = tf.gather(self.history, cache["ids"]) + tf.gather(self.position,
                                                                     cache["positions"])
        slots = cache_index + tf.range(tf.shape(token_ids)[1])
        visible = ((key_mask[:, None, :] > 0)
                   & (tf.range(tf.shape(key_mask)[1])[None, None, :] <= slots[None, :, None]))
        logits = tf.gather(self.last, token_ids) + tf.einsum(
            "bnm,bmv->bnv", tf.cast(visible, tf.float32), per_slot)
        if context is not None:
            logits += context[:, None, :]
        return logits, cache

    def log_probs_after(self, prompt, continuations, context=None):
        """float64 [N, T, V]: the log-probabilities of the next token after the prompt
        (a list of ids) and each prefix of each continuation [N, T], from one full
        pass (no incremental cache): an oracle for the decoding loops."""
        continuations = np.asarray(continuations, "int32")
        count, length = continuations.shape
        ids = np.concatenate([np.tile(prompt, (count, 1)), continuations], 1).astype("int32")
        total = ids.shape[1]
        positions = np.tile(np.arange(total, dtype="int32"), (count, 1))
        if context is not None:
            context = tf.tile(tf.constant(context, tf.float32)[None, :], [count, 1])
        logits, _ = self.step(tf.constant(ids), self.init_cache(count, total), 0, positions,
                              tf.ones([count, total], tf.int32), context=context)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float64))
        return log_probs.numpy()[:, len(prompt) - 1:len(prompt) - 1 + length]


def all_hypotheses(model, prompt, vocab_size, max_new_tokens, stop_ids, alpha, context=None):
    """Every hypothesis beam search can return, by exhaustive enumeration: ids ending
    at their first stop id, or max_new_tokens ids without one; as (score, ids),
    score = log-probability / ((5 + length) / 6) ** alpha, best first."""
    sequences = np.array(list(itertools.product(range(vocab_size), repeat=max_new_tokens)))
    log_probs = model.log_probs_after(prompt, sequences, context)
    hypotheses = {}
    for sequence, table in zip(sequences, log_probs):
        total = 0.0
        for length, token in enumerate(sequence, 1):
            total += table[length - 1, token]
            if token in stop_ids or length == max_new_tokens:
                hypotheses[tuple(sequence[:length])] = total / ((5 + length) / 6) ** alpha
                break
    return sorted(((score, ids) for ids, score in hypotheses.items()), reverse=True)


def compiled(function, mode, **fixed):
    """`function` with the keyword arguments `fixed` (e.g. the step function,
    max_new_tokens) traced by tf.function ("graph") or compiled with XLA ("xla");
    called with tensors, it returns numpy."""
    traced = tf.function(lambda *args, **kwargs: function(*args, **kwargs, **fixed),
                         jit_compile=mode == "xla")
    return lambda *args, **kwargs: tf.nest.map_structure(lambda t: t.numpy(),
                                                         traced(*args, **kwargs))


def run(function, mode, *args, **kwargs):
    """`compiled(function, mode)` called once: tensor keyword arguments are its
    inputs, the others fixed."""
    fixed = {key: value for key, value in kwargs.items() if not tf.is_tensor(value)}
    tensors = {key: value for key, value in kwargs.items() if tf.is_tensor(value)}
    return compiled(function, mode, **fixed)(*args, **tensors)
