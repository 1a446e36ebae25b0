"""bench.served_decode through bench.all --parts=decode: SmolLM2's export and its GGUF
files decoded side by side, added to a recorded benchmark page (slow: SmolLM2 is
exported; needs the llama_cpp extra)."""
import pytest

from tests.bench.recorded_page import run_part

pytest.importorskip("llama_cpp", reason="pip install -e '.[llama-cpp]'")


@pytest.mark.slow
def test_decode_part_adds_its_section_to_the_recorded_page(tmp_path):
    report, record = run_part("decode", tmp_path)
    assert "## Served decoding against llama.cpp" in report
    assert "| 1 |" in report and "share of traced op time" in report
    rates = record["tokens_per_second"]
    assert rates["kerasllm f32"]["1"] > 0 and rates["llama.cpp q8_0"]["2"] > 0
    # The same weights decode the same greedy tokens at F32.
    assert record["same_greedy_rows"]["f32, batch 1"] == 1
    assert "--parts=decode" in record["command"]
