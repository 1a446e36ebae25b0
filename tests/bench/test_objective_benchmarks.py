"""The two benchmarks of issue 29, run whole at toy sizes (slow: each trains several
models in fresh processes): every pretraining objective at one FLOP budget, then
fine-tuned; and a distilled student against a directly trained one."""
import json
import os
import subprocess
import sys

import pytest

from kerasllm.models import BertEncoder, registry
from kerasllm.pretrained.presets import save_preset
from kerasllm.tokenizers import WordPieceTokenizer
from kerasllm.tokenizers.wordpiece import RESERVED_TOKENS
from tests.fresh_process import ROOT
from tests.trainers.trainer_runs import Trainer


def bench(name, *args):
    result = subprocess.run([sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_objectives_at_one_budget(tmp_path):
    bench("pretraining_objectives", "--model=bert_tiny", "--objectives=mlm,electra,plm,none",
          "--reference_steps=6", "--max_seq_length=32", "--vocab_size=500", "--seeds=0",
          "--finetune_flags=--epochs=1,--steps_per_epoch=2", f"--work_dir={tmp_path}/runs",
          f"--output={tmp_path}/objectives")
    record = json.load(open(tmp_path / "objectives.json"))
    runs = {run["objective"]: run for run in record["runs"]}
    assert list(runs) == ["mlm", "electra", "plm", "none"] and runs["mlm"]["steps"] == 6
    assert runs.pop("none")["steps"] == 0  # the fresh encoder, fine-tuned as the rest
    # Equal FLOPs, to the nearest step: objectives that cost more a step take fewer.
    budget = 6 * runs["mlm"]["step_gflops"]
    for run in runs.values():
        assert abs(run["steps"] * run["step_gflops"] - budget) <= run["step_gflops"] / 2
    assert runs["plm"]["steps"] < 6
    assert all(0 < run["accuracy"]["0"] < 100 for run in record["runs"])
    assert "| plm |" in open(tmp_path / "objectives.md").read()


@pytest.mark.slow
def test_distilled_against_direct_student(tmp_path):
    words = "the a film movie is good bad not funny dull great boring".split()
    tokenizer = WordPieceTokenizer(list(RESERVED_TOKENS) + words)
    encoder = BertEncoder(registry.get("bert_tiny").replace(
        vocab_size=tokenizer.vocab_size, max_sequence_length=64)).build_for_inputs()
    preset = save_preset(encoder, str(tmp_path / "preset"), tokenizer=tokenizer)
    teacher = str(tmp_path / "teacher")
    Trainer("finetune_bert").run(
        f"--init_checkpoint={preset}", "--dataset=rt_sentences", f"--export_dir={teacher}",
        f"--model_dir={tmp_path / 'teacher_model'}", "--epochs=1", "--steps_per_epoch=2")
    bench("distillation_rt", f"--teacher={teacher}", "--seeds=0", "--rounds=2", "--repeats=1",
          "--student_flags=--epochs=1,--steps_per_epoch=2,--student_settings=num_layers=1",
          f"--work_dir={tmp_path}/runs", f"--output={tmp_path}/distillation")
    record = json.load(open(tmp_path / "distillation.json"))
    assert len(record["students"]) == 2
    for student in record["students"].values():
        assert 0 < student["accuracy"]["0"] < 100 and student["ms"] > 0
    assert os.path.exists(tmp_path / "distillation.md")
