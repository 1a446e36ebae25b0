"""bench.bert_serving_latency through bench.all --parts=serving: a tiny encoder's short
and long batches timed as TF Serving runs them, added to a recorded benchmark page."""
from tests.bench.recorded_page import run_part


def test_serving_part_adds_its_section_to_the_recorded_page(tmp_path):
    report, record = run_part("serving", tmp_path)
    assert "## Training tokens/s" in report  # kept from the record
    assert "## BERT serving latency" in report and "bert_tiny's serving_default" in report
    # bert_tiny: 4 and 100 one-piece words plus [CLS] and [SEP], or max_seq_length.
    assert "| longest text | 6 | 102 |" in report and "| max_seq_length | 128 | 128 |" in report
    assert "--parts=serving" in record["command"]
