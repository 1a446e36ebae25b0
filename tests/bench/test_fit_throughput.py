"""bench.fit_throughput through bench.all --parts=fit: Keras fit on kerasllm's tasks,
the library's loop and keras-hub's fit, one step each at tiny sizes, added to a
recorded benchmark page."""
from tests.bench.recorded_page import run_part


def test_fit_part_adds_its_section_to_the_recorded_page(tmp_path):
    report, record = run_part("fit", tmp_path)
    assert "## Training tokens/s" in report  # kept from the record
    assert "## Keras fit vs the training loop and keras-hub's fit" in report
    assert "| bert_tiny | off |" in report and "| gpt_tiny | off |" in report
    assert "--parts=fit" in record["command"]
