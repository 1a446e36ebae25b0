"""Every pretrain_bert --objective beyond BERT's own: a short run on real text exports
the encoder's signatures, and finetune_bert starts from its --model_dir unchanged."""
import json
import os

import pytest

from kerasllm.datasets.shakespeare import default_corpus_files
from trainers.pretrain_bert import OBJECTIVES
from tests.trainers.trainer_runs import Trainer


@pytest.fixture(scope="module")
def hamlet(tmp_path_factory):
    path = next(f for f in default_corpus_files() if os.path.basename(f).startswith("hamlet"))
    directory = tmp_path_factory.mktemp("corpus")
    with open(path, encoding="utf-8") as f:
        (directory / "hamlet.txt").write_text(f.read()[:40000])
    return str(directory / "hamlet.txt")


@pytest.fixture(scope="module")
def classifier_rows(tmp_path_factory):
    rows = [("the king is dead", "sad"), ("long live the queen", "glad")] * 8
    path = tmp_path_factory.mktemp("task") / "train.tsv"
    path.write_text("text\tlabel\n" + "".join(f"{text}\t{label}\n" for text, label in rows))
    return str(path)


@pytest.mark.parametrize("objective", [name for name in OBJECTIVES if name != "mlm_nsp"])
def test_objective_pretrains_exports_and_fine_tunes(objective, hamlet, classifier_rows,
                                                    tmp_path):
    pretrained, export_dir = str(tmp_path / "pretrained"), str(tmp_path / "export")
    output = Trainer("pretrain_bert").run(
        f"--objective={objective}", "--model=bert_tiny", f"--corpus={hamlet}",
        "--vocab_size=400", "--max_seq_length=32", "--batch_size=8", "--train_steps=4",
        "--log_every=2", f"--model_dir={pretrained}", f"--export_dir={export_dir}")
    assert "step 4/4" in output
    with open(os.path.join(export_dir, "1", "assets.extra", "kerasllm.json")) as f:
        metadata = json.load(f)
    assert {"serving_default", "encode_pair"} <= set(metadata["signatures"])
    assert metadata["flags"]["objective"] == objective

    output = Trainer("finetune_bert").run(
        f"--init_checkpoint={pretrained}", f"--train_file={classifier_rows}",
        f"--model_dir={tmp_path / 'classifier'}", "--max_seq_length=16", "--batch_size=4",
        "--epochs=1", "--steps_per_epoch=2", "--noexport")
    assert f"loading the backbone trained in {pretrained}" in output


def test_roberta_recipe_reads_as_masked_lm_alone():
    fv = Trainer("pretrain_bert").parse("--flagfile=recipes/roberta_mini_shakespeare.flags")
    assert fv.objective == "mlm" and fv.model == "bert_mini"
