"""Runs one part of bench.all in quick mode against a copy of the recorded benchmark
data, as the parts' smoke tests do."""
import json
import pathlib
import shutil
import subprocess
import sys

from tests.fresh_process import ROOT


def run_part(part, tmp_path):
    """(the rewritten benchmarks.md text, the part's record in benchmarks.json) after
    `python -m bench.all --quick --parts=<part>` on a copy of docs/benchmarks.json."""
    shutil.copy(pathlib.Path(ROOT, "docs", "benchmarks.json"), tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "bench.all", "--quick", f"--parts={part}",
         f"--output={tmp_path}/benchmarks.md"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "benchmarks.json").read_text())[part]
    return (tmp_path / "benchmarks.md").read_text(), record
