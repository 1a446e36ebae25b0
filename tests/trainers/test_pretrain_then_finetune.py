"""The whole kerasllm path: pretrain_bert on real text, then finetune_bert starting
from that run's --model_dir, then the exported classifier in a fresh process."""
import os

import numpy as np
import tensorflow as tf

from kerasllm.datasets.shakespeare import default_corpus_files
from kerasllm.models import BertEncoder
from kerasllm.pretrained.model_dir import load_backbone
from tests.fresh_process import check_in_fresh_process
from tests.trainers.trainer_runs import Trainer


def test_finetune_starts_from_a_pretraining_model_dir(tmp_path):
    hamlet = next(f for f in default_corpus_files() if os.path.basename(f).startswith("hamlet"))
    with open(hamlet, encoding="utf-8") as f:
        (tmp_path / "hamlet.txt").write_text(f.read()[:40000])
    pretrained = str(tmp_path / "pretrained")
    Trainer("pretrain_bert").run(
        "--model=bert_tiny", f"--corpus={tmp_path / 'hamlet.txt'}", "--vocab_size=400",
        "--max_seq_length=32", "--batch_size=8", "--train_steps=4", "--log_every=2",
        f"--model_dir={pretrained}", "--noexport")
    assert sorted(p for p in os.listdir(pretrained) if p.endswith(".json")) == ["config.json"]

    rows = [("the king is dead", "sad"), ("long live the queen", "glad")] * 8
    (tmp_path / "train.tsv").write_text(
        "text\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    export_dir = str(tmp_path / "export")
    output = Trainer("finetune_bert").run(
        f"--init_checkpoint={pretrained}", f"--train_file={tmp_path / 'train.tsv'}",
        f"--eval_file={tmp_path / 'train.tsv'}", f"--model_dir={tmp_path / 'classifier'}",
        f"--export_dir={export_dir}", "--max_seq_length=16", "--batch_size=4", "--epochs=1",
        "--steps_per_epoch=3", "--learning_rate=1e-3", "--freeze_token_embedding")
    assert f"loading the backbone trained in {pretrained}" in output
    assert "best epoch 1: eval accuracy" in output
    check = check_in_fresh_process(os.path.join(export_dir, "1"))
    assert check.returncode == 0, check.stderr[-2000:]

    # --freeze_token_embedding: the word-piece table is the pretrained one, the rest moved.
    before, _ = load_backbone(pretrained)
    after = BertEncoder(before.config).build_for_inputs()
    tf.train.Checkpoint(task=tf.train.Checkpoint(backbone=after)).read(
        tf.train.latest_checkpoint(str(tmp_path / "classifier"))).expect_partial()
    np.testing.assert_array_equal(after.token_embedding.embeddings.numpy(),
                                  before.token_embedding.embeddings.numpy())
    moved = [not np.array_equal(a.numpy(), b.numpy())
             for a, b in zip(after.blocks[0].weights, before.blocks[0].weights)]
    assert any(moved)
