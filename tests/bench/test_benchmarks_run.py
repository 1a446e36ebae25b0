"""Every benchmark runs: one round of one step each, in the fresh process a user
starts it in (the scripts define absl flags of the same names)."""
import subprocess
import sys

import pytest

from tests.fresh_process import ROOT


@pytest.mark.parametrize("script", ["bert_pretraining_throughput", "bert_finetuning_throughput"])
def test_benchmark_runs_one_step(script):
    result = subprocess.run(
        [sys.executable, f"bench/{script}.py", "--models=bert_tiny", "--jit_compile=off",
         "--rounds=1", "--steps_per_round=1", "--batch_size=4", "--seq_length=16"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "bert_tiny   off" in result.stdout and "ratio" in result.stdout


def test_gpt_benchmark_runs_one_step():
    result = subprocess.run(
        [sys.executable, "-m", "bench.gpt_throughput", "--quick", "--steps=1",
         "--configs=gpt_tiny"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for table in ("training:", "greedy generation in-process", "exported `generate`"):
        assert table in result.stdout
    assert "gpt_tiny    off" in result.stdout and "ratio" in result.stdout
