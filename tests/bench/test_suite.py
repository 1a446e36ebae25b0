"""bench.all, the benchmark suite: one step of every kind of measurement, each in its
own process, and the page and plot it makes from its recorded figures."""
import json
import pathlib
import shutil
import subprocess
import sys

from tests.fresh_process import ROOT


def test_benchmark_suite_runs_one_step_of_each_measurement(tmp_path):
    """bench.all: every kind of measurement in its own process, and the report with
    its plot and recorded figures; bert_tiny trains (both sides, and bfloat16; XLA on
    is --quick's only omission), seq2seq_tiny translates (GPT generation is
    bench.gpt_throughput's smoke test)."""
    output = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench.all", "--quick", "--models=bert_tiny",
         "--generation_models=seq2seq_tiny", f"--output={output}"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = output.read_text()
    assert "python -m bench.all --quick" in report and "2 cores" in report
    for heading in ("## Training tokens/s", "## mixed_bfloat16 vs float32", "## Generation"):
        assert heading in report
    row = next(line for line in report.splitlines() if line.startswith("| bert_tiny | 4,"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[4].split()[0]) > 0 and cells[8].endswith("%")  # ratio, MFU
    assert "| seq2seq_tiny |" in report
    assert (tmp_path / "benchmarks.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "benchmarks.json").read_text())["train"][0]["ours"] > 0


def test_the_committed_benchmark_page_is_made_from_its_recorded_figures(tmp_path):
    """docs/benchmarks.md is what `bench.all --replot` makes of docs/benchmarks.json."""
    docs = pathlib.Path(ROOT, "docs")
    shutil.copy(docs / "benchmarks.json", tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "bench.all", "--replot", f"--output={tmp_path}/benchmarks.md"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "benchmarks.md").read_text() == (docs / "benchmarks.md").read_text()
    assert (tmp_path / "benchmarks.png").stat().st_size > 10_000


def test_benchmark_suite_names_an_unknown_model():
    result = subprocess.run([sys.executable, "-m", "bench.all", "--models=bert_huge"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "unknown model 'bert_huge'" in result.stderr
