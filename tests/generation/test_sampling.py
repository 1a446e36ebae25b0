"""Samplers: every setting per row, excluded tokens never drawn, the draws
distributed as the renormalised probabilities, and reproducible per row."""
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.generation.row_random import row_uniforms
from kerasllm.generation.sampling import sample
from tests.generation.toy_models import compiled, run

PROBABILITIES = np.array([0.3, 0.22, 0.16, 0.12, 0.09, 0.06, 0.03, 0.02])
LOGITS = np.log(PROBABILITIES).astype("float32")
DRAWS = 20000


def frequencies(mode="graph", temperature=1.0, top_k=0, top_p=1.0, candidates=(256,),
                logits=LOGITS):
    """Token frequencies of DRAWS rows of the same logits, each with its own seed."""
    def settings(value, dtype):
        return tf.fill([DRAWS], tf.constant(value, dtype))

    tokens = run(sample, mode, tf.tile(tf.constant(logits)[None, :], [DRAWS, 1]),
                 settings(temperature, tf.float32), settings(top_k, tf.int32),
                 settings(top_p, tf.float32), tf.range(DRAWS), tf.constant(7),
                 candidates=candidates)
    return np.bincount(tokens, minlength=len(logits)) / DRAWS


def assert_distributed_as(observed, expected):
    """Excluded tokens are never drawn; the others within 4.5 standard errors."""
    expected = np.asarray(expected) / np.sum(expected)
    assert np.all(observed[expected == 0] == 0), observed
    tolerance = 4.5 * np.sqrt(expected * (1 - expected) / DRAWS) + 1e-9
    np.testing.assert_array_less(np.abs(observed - expected), tolerance)


def renormalised(keep):
    return np.where(np.arange(len(PROBABILITIES)) < keep, PROBABILITIES, 0.0)


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_plain_sampling_follows_the_softmax(mode):
    assert_distributed_as(frequencies(mode), PROBABILITIES)


def test_temperature_sharpens_and_flattens():
    for temperature in (0.5, 2.0):
        expected = PROBABILITIES ** (1 / temperature)
        assert_distributed_as(frequencies(temperature=temperature), expected)


@pytest.mark.parametrize("mode", ["graph", "xla"])
# (2, 4): filters that reach past the 2 most likely tokens fall back to the 4 most
# likely, and past those to a full sort.
@pytest.mark.parametrize("candidates", [(256,), (2, 4)])
def test_top_k_keeps_only_the_k_most_likely(mode, candidates):
    assert_distributed_as(frequencies(mode, top_k=3, candidates=candidates),
                          renormalised(3))


@pytest.mark.parametrize("mode", ["graph", "xla"])
@pytest.mark.parametrize("candidates", [(256,), (2, 4)])
def test_top_p_keeps_the_smallest_set_reaching_p(mode, candidates):
    # Cumulative: 0.3, 0.52, 0.68, 0.8, 0.89, 0.95, ...
    for top_p, kept in ((0.25, 1), (0.6, 3), (0.9, 6)):
        assert_distributed_as(frequencies(mode, top_p=top_p, candidates=candidates),
                              renormalised(kept))


def test_top_p_applies_to_the_top_k_renormalised():
    # Top 4 hold 0.8; 0.6 of that is 0.48, which the first two (0.52) reach.
    assert_distributed_as(frequencies(top_k=4, top_p=0.6), renormalised(2))


def test_temperature_zero_is_the_argmax_whatever_the_filters():
    logits = np.random.default_rng(0).normal(size=(6, 50)).astype("float32")
    tokens = run(sample, "graph", tf.constant(logits), tf.zeros([6]),
                 tf.constant([0, 3, 0, 1, 5, 0]), tf.constant([1.0, 0.5, 0.1, 1.0, 0.9, 1.0]),
                 tf.range(6), tf.constant(0))
    np.testing.assert_array_equal(tokens, np.argmax(logits, -1))


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_a_rows_draw_depends_only_on_its_logits_settings_and_seed(mode):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 300)).astype("float32")
    settings = dict(temperature=[1.0, 0.0, 0.7, 1.3, 1.0], top_k=[0, 0, 20, 0, 5],
                    top_p=[1.0, 1.0, 1.0, 0.8, 0.5], seeds=[11, 12, 13, 14, 15])

    draw_tokens = compiled(sample, mode)

    def draw(rows):
        return draw_tokens(tf.constant(logits[rows]),
                           *(tf.constant(np.asarray(v)[rows]) for v in settings.values()),
                           tf.constant(3))

    together = draw([0, 1, 2, 3, 4])
    for row in range(5):
        assert draw([row])[0] == together[row]
    assert draw([4, 2, 0])[2] == together[0]
    # Other seeds or steps draw other tokens (checked on the plain-sampling row).
    plain = [draw_tokens(tf.constant(logits[:1]), tf.ones([1]), tf.zeros([1], tf.int32),
                         tf.ones([1]), tf.constant([seed]), tf.constant(step))[0]
             for seed in range(5) for step in range(2)]
    assert len(set(plain)) > 3


def test_row_uniforms_are_uniform_and_independent_of_neighbours():
    values = row_uniforms(tf.range(2000), 5, 64).numpy()
    assert 0.0 < values.min() and values.max() < 1.0
    assert abs(values.mean() - 0.5) < 0.003
    assert abs(values.std() - np.sqrt(1 / 12)) < 0.003
    # Neighbouring seeds and columns are uncorrelated.
    assert abs(np.corrcoef(values[:-1, 0], values[1:, 0])[0, 1]) < 0.08
    assert abs(np.corrcoef(values[:, 0], values[:, 1])[0, 1]) < 0.08
    np.testing.assert_array_equal(row_uniforms(tf.constant([17]), 5, 64).numpy()[0],
                                  values[17])
