"""bench.fit_throughput through bench.all --parts=fit: Keras fit on kerasllm's tasks,
the library's loop and keras-hub's fit, one step each at tiny sizes, added to a
recorded benchmark page."""
import json
import pathlib
import shutil
import subprocess
import sys

from tests.fresh_process import ROOT


def test_fit_part_adds_its_section_to_the_recorded_page(tmp_path):
    shutil.copy(pathlib.Path(ROOT, "docs", "benchmarks.json"), tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "bench.all", "--quick", "--parts=fit",
         f"--output={tmp_path}/benchmarks.md"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "benchmarks.md").read_text()
    assert "## Training tokens/s" in report  # kept from the record
    assert "## Keras fit vs the training loop and keras-hub's fit" in report
    assert "| bert_tiny | off |" in report and "| gpt_tiny | off |" in report
    fitted = json.loads((tmp_path / "benchmarks.json").read_text())["fit"]
    assert "--parts=fit" in fitted["command"]
    assert all(row["fit_over_loop"] > 0 and row["fit_over_keras_hub"] > 0
               for row in fitted["rows"])
