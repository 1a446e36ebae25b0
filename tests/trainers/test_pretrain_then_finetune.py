"""The whole kerasllm path: pretrain_bert on real text, then finetune_bert starting
from that run's --model_dir, then the exported classifier in a fresh process."""
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from kerasllm.data.shakespeare import default_corpus_files
from kerasllm.models import BertEncoder
from kerasllm.training.pretrained_encoder import load_pretrained_encoder

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(trainer, *args):
    result = subprocess.run([sys.executable, "-m", f"trainers.{trainer}", *args],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout + result.stderr


def test_finetune_starts_from_a_pretraining_model_dir(tmp_path):
    hamlet = next(f for f in default_corpus_files() if os.path.basename(f).startswith("hamlet"))
    with open(hamlet, encoding="utf-8") as f:
        (tmp_path / "hamlet.txt").write_text(f.read()[:40000])
    pretrained = str(tmp_path / "pretrained")
    run("pretrain_bert", "--model=bert_tiny", f"--corpus={tmp_path / 'hamlet.txt'}",
        "--vocab_size=400", "--max_seq_length=32", "--batch_size=8", "--train_steps=4",
        "--warmup_steps=2",
        "--log_every=2", f"--model_dir={pretrained}", "--noexport")
    assert sorted(p for p in os.listdir(pretrained) if p.endswith(".json")) == ["config.json"]

    rows = [("the king is dead", "sad"), ("long live the queen", "glad")] * 8
    (tmp_path / "train.tsv").write_text(
        "text\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    export_dir = str(tmp_path / "export")
    output = run("finetune_bert", f"--init_checkpoint={pretrained}",
                 f"--train_file={tmp_path / 'train.tsv'}", f"--eval_file={tmp_path / 'train.tsv'}",
                 f"--model_dir={tmp_path / 'classifier'}", f"--export_dir={export_dir}",
                 "--max_seq_length=16", "--batch_size=4", "--epochs=1", "--steps_per_epoch=3",
                 "--learning_rate=1e-3", "--freeze_token_embedding")
    assert f"loading the encoder pretrained in {pretrained}" in output
    assert "best epoch 1: eval accuracy" in output
    check = subprocess.run([sys.executable, "-m", "kerasllm.export.check",
                            os.path.join(export_dir, "1")], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr[-2000:]

    # --freeze_token_embedding: the word-piece table is the pretrained one, the rest moved.
    before, _ = load_pretrained_encoder(pretrained)
    after = BertEncoder(before.config).build_for_inputs()
    tf.train.Checkpoint(task=tf.train.Checkpoint(encoder=after)).read(
        tf.train.latest_checkpoint(str(tmp_path / "classifier"))).expect_partial()
    np.testing.assert_array_equal(after.token_embedding.embeddings.numpy(),
                                  before.token_embedding.embeddings.numpy())
    moved = [not np.array_equal(a.numpy(), b.numpy())
             for a, b in zip(after.blocks[0].weights, before.blocks[0].weights)]
    assert any(moved)
