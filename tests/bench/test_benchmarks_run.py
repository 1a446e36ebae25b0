"""Every benchmark script runs: one round of one step each, in the fresh process a
user starts it in (the scripts define absl flags of the same names). The suite,
bench.all: tests/bench/test_suite.py; the seq2seq scripts:
tests/bench/test_seq2seq_benchmarks.py."""
import json
import pathlib
import subprocess
import sys

import pytest

from tests.fresh_process import ROOT


# Pretraining's case trains in bench.all's smoke test (tests/bench/test_suite.py) and
# its script is fine-tuning's but for the case: the fast run covers fine-tuning's.
@pytest.mark.parametrize("script", [
    pytest.param("bert_pretraining_throughput", marks=pytest.mark.slow),
    "bert_finetuning_throughput"])
def test_benchmark_runs_one_step(script):
    result = subprocess.run(
        [sys.executable, f"bench/{script}.py", "--models=bert_tiny", "--jit_compile=off",
         "--rounds=1", "--steps_per_round=1", "--batch_size=4", "--seq_length=16"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| bert_tiny | off |" in result.stdout and "kerasllm / keras-hub" in result.stdout


def test_gpt_benchmark_runs_one_step():
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpt_throughput", "--quick", "--steps=1",
         "--configs=gpt_tiny"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for table in ("training:", "greedy generation in-process", "exported `generate`"):
        assert table in result.stdout
    assert "| gpt_tiny | off |" in result.stdout and "kerasllm / keras-hub" in result.stdout


MODEL_GARDEN_PYTHON = pathlib.Path(ROOT, ".venv-model-garden", "bin", "python")


@pytest.mark.skipif(not MODEL_GARDEN_PYTHON.exists(),
                    reason="Model Garden needs its own virtual environment "
                           "(see bench/model_garden_bert.py)")
def test_model_garden_benchmark_runs_one_step():
    result = subprocess.run(
        [str(MODEL_GARDEN_PYTHON), "bench/model_garden_bert.py", "--model=bert_tiny",
         "--rounds=1", "--steps_per_round=1", "--batch_size=2", "--seq_length=16",
         "--num_predictions=2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    line = json.loads(result.stdout.strip())
    assert line["side"] == "model-garden" and line["values"][0] > 0
