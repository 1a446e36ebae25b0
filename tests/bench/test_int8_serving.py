"""bench.int8_serving through bench.all --parts=int8: a tiny GPT's float32 and int8
exports timed as TF Serving runs them, added to a recorded benchmark page."""
from tests.bench.recorded_page import run_part


def test_int8_part_adds_its_section_to_the_recorded_page(tmp_path):
    report, record = run_part("int8", tmp_path)
    assert "## Training tokens/s" in report  # kept from the record
    assert "## int8 against float32, served" in report and "gpt_tiny (random weights)" in report
    row = record["rows"][0]
    assert row["batch_size"] == 2 and min(row["tokens_per_second"].values()) > 0
    assert record["bytes"]["int8"] < 0.3 * record["bytes"]["float32"]
    assert "--parts=int8" in record["command"]
