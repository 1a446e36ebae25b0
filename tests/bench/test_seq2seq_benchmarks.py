"""The seq2seq benchmarks run (--quick: seq2seq_tiny, a 400-piece vocabulary, one or
two steps), in the fresh process a user starts them in, on the default Bible pairs;
and the keras-hub baseline's cached decoding computes what its full forward pass does."""
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bench.keras_hub_seq2seq import KerasHubSeq2SeqLM
from kerasllm.models import registry
from kerasllm.models.seq2seq import Seq2SeqLM, Seq2SeqTransformer
from tests.fresh_process import ROOT


def run(module, *args):
    result = subprocess.run([sys.executable, "-m", module, "--quick", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_throughput_benchmark_runs_one_step():
    out = run("bench.seq2seq_throughput")
    for table in ("training:", "beam-4 translation in-process", "exported `translate`"):
        assert table in out
    assert "seq2seq_tiny" in out and "ratio" in out


def test_quality_benchmark_runs_two_steps():
    out = run("bench.seq2seq_quality")
    assert "copy-the-source baseline" in out
    assert "| 2 |" in out and "kerasllm BLEU" in out and "keras-hub BLEU" in out


@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_keras_hub_baseline_matches_kerasllm_size_and_caches_exactly(norm_position):
    config = registry.get("seq2seq_tiny").replace(vocab_size=300, norm_position=norm_position)
    theirs = KerasHubSeq2SeqLM(config).build_for_inputs()
    ours = Seq2SeqLM(Seq2SeqTransformer(config)).build_for_inputs()
    assert (sum(np.prod(v.shape) for v in theirs.trainable_variables)
            == sum(np.prod(v.shape) for v in ours.trainable_variables))
    rng = np.random.default_rng(0)
    source = rng.integers(4, 300, (2, 7)).astype("int32")
    source_mask = np.array([[1] * 7, [1] * 4 + [0] * 3], "int32")
    target = rng.integers(4, 300, (2, 5)).astype("int32")
    full = theirs({"source_ids": source, "source_padding_mask": source_mask,
                   "target_ids": target, "target_padding_mask": np.ones_like(target)}
                  )["logits"].numpy()
    encoder_output = theirs.encode(source, source_mask.astype(bool))
    layers, heads, size = config.num_decoder_layers, config.num_heads, config.head_size
    self_cache = tf.zeros([2, layers, 2, 5, heads, size])
    cross_cache = tf.zeros([2, layers, 2, 7, heads, size])
    steps = []
    for t in range(5):
        logits, self_cache, cross_cache = theirs.call_decoder_with_cache(
            target[:, t:t + 1], encoder_output, source_mask.astype(bool), self_cache, t,
            cross_cache, 0 if t == 0 else None)
        steps.append(logits.numpy())
    np.testing.assert_allclose(np.concatenate(steps, 1), full, atol=1e-4)
