"""bench.bert_serving_latency through bench.all --parts=serving: a tiny encoder's short
and long batches timed as TF Serving runs them, added to a recorded benchmark page."""
import json
import pathlib
import shutil
import subprocess
import sys

from tests.fresh_process import ROOT


def test_serving_part_adds_its_section_to_the_recorded_page(tmp_path):
    shutil.copy(pathlib.Path(ROOT, "docs", "benchmarks.json"), tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "bench.all", "--quick", "--parts=serving",
         f"--output={tmp_path}/benchmarks.md"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "benchmarks.md").read_text()
    assert "## Training tokens/s" in report  # kept from the record
    assert "## BERT serving latency" in report and "bert_tiny's serving_default" in report
    # bert_tiny: 4 and 100 one-piece words plus [CLS] and [SEP], or max_seq_length.
    assert "| longest text | 6 | 102 |" in report and "| max_seq_length | 128 | 128 |" in report
    served = json.loads((tmp_path / "benchmarks.json").read_text())["serving"]
    assert "--parts=serving" in served["command"]
    assert all(row["short_ms"] > 0 and row["long_ms"] > 0 for row in served["rows"])


def test_serving_part_needs_a_record_to_add_to(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.all", "--parts=serving",
         f"--output={tmp_path}/benchmarks.md"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "which a throughput run writes first" in result.stderr
