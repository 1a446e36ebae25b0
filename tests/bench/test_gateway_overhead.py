"""bench.gateway_overhead through bench.all --parts=gateway: a tiny GPT's latency,
throughput and streaming through the gateway process and directly, added to a
recorded benchmark page."""
from tests.bench.recorded_page import run_part


def test_gateway_part_adds_its_section_to_the_recorded_page(tmp_path):
    report, record = run_part("gateway", tmp_path)
    assert "## Training tokens/s" in report  # kept from the record
    assert "## OpenAI gateway: overhead and chunked streaming" in report
    assert "| latency, batch 1 (ms) |" in report and "| stream: whole answer (ms) |" in report
    assert record["latency_ms"]["gateway"] > 0 and record["requests_per_second"]["direct"] > 0
    assert "--parts=gateway" in record["command"]
