"""bench.lora_throughput through bench.all --parts=lora: kerasllm's LoRA and full
fine-tuning and keras-hub's LoRA, each side in its own process, two steps at
llama_tiny, added to a recorded benchmark page; and the page of its own the real
run writes (docs/benchmarks/lora.md)."""
from bench import lora_throughput
from tests.bench.recorded_page import run_part


def cells(text, first):
    """The cells after the first one of the markdown row that begins with `first`."""
    row = next(line for line in text.splitlines() if line.startswith(f"| {first} |"))
    return [cell.strip() for cell in row.strip("|").split("|")][1:]


def test_lora_part_adds_its_section_and_makes_its_page(tmp_path):
    report, record = run_part("lora", tmp_path)
    assert "## Training tokens/s" in report  # kept from the record
    assert "## LoRA fine-tuning: speed and memory" in report
    assert "--parts=lora" in record["command"] and record["model"] == "llama_tiny"
    sides = record["sides"]
    assert set(sides) == set(lora_throughput.SIDES)
    # Only adapters train under LoRA; keras-hub's per-head adapters are more weights.
    assert (sides["kerasllm LoRA"]["trainable_parameters"]
            < sides["keras-hub LoRA"]["trainable_parameters"]
            < sides["kerasllm full"]["trainable_parameters"])
    for side in lora_throughput.SIDES:
        assert sides[side]["peak_rss_mib"] >= sides[side]["built_rss_mib"] > 100
    for comparison in ("kerasllm LoRA / kerasllm full", "kerasllm LoRA / keras-hub LoRA"):
        assert all(float(ratio) > 0 for ratio in cells(report, comparison))
    page = lora_throughput.page(record)
    assert page.startswith("# LoRA fine-tuning") and f"commit {record['commit']}" in page
    assert cells(page, "kerasllm full") == cells(report, "kerasllm full")
