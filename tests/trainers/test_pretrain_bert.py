"""trainers.pretrain_bert end to end (train, resume, export), its errors on bad input,
and, in one fresh process, the one line a user sees."""
import json
import os
import shutil

import pytest

from kerasllm.datasets.shakespeare import default_corpus_files
from tests.trainers.trainer_runs import Trainer

TINY = ["--model=bert_tiny", "--max_seq_length=32", "--batch_size=8", "--vocab_size=400",
        "--log_every=5"]
trainer = Trainer("pretrain_bert")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Three plays from the default corpus: real text, small enough for seconds."""
    files = sorted(default_corpus_files())
    chosen = [f for f in files if os.path.basename(f).startswith(("hamlet", "macbeth",
                                                                  "tempest"))]
    assert len(chosen) == 3, files
    directory = tmp_path_factory.mktemp("corpus")
    for path in chosen:
        with open(path, encoding="utf-8") as src:
            (directory / os.path.basename(path)).write_text(src.read()[:60000])
    return str(directory / "*.txt")


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A first run of 20 steps, then a second asking for 30: it must resume at 20."""
    base = tmp_path_factory.mktemp("run")
    model_dir, export_dir = str(base / "model"), str(base / "export")
    common = [*TINY, f"--corpus={corpus}", "--checkpoint_every=10", "--learning_rate=2e-3",
              "--warmup_steps=5"]
    dirs = [f"--model_dir={model_dir}", f"--export_dir={export_dir}"]
    first = trainer.run(*common, *dirs, "--train_steps=20", "--noexport")
    second = trainer.run(*common, *dirs, "--train_steps=30")
    return common, model_dir, export_dir, first, second


def test_train_resume_and_export(trained):
    common, model_dir, export_dir, first, second = trained
    assert "step 20/20" in first
    assert "resumed from" in second and "at step 20" in second  # restored, not restarted
    assert "step 30/30" in second
    assert sorted(os.listdir(export_dir)) == ["1"]
    assert f"exported {export_dir}/1" in second
    assert os.path.exists(os.path.join(model_dir, "vocab.txt"))
    with open(os.path.join(model_dir, "config.json")) as f:
        assert json.load(f)["family"] == "bert"
    with open(os.path.join(export_dir, "1", "assets.extra", "kerasllm.json")) as f:
        metadata = json.load(f)
    assert metadata["family"] == "bert" and metadata["step"] == 30
    assert metadata["signatures"] == ["encode_pair", "fill_mask", "serving_default"]
    assert metadata["flags"]["train_steps"] == 30 and "vocab_size" in metadata["flags"]


def test_five_steps_need_no_other_flag(corpus, tmp_path):
    """The default warmup adapts to a short run instead of exceeding it."""
    output = trainer.run(*TINY, f"--corpus={corpus}", "--train_steps=5",
                         f"--model_dir={tmp_path}/m", "--noexport")
    assert "step 5/5" in output


def test_unknown_model_names_the_choices(tmp_path):
    message = trainer.error("--model=bert_gigantic", f"--model_dir={tmp_path}")
    assert "bert_gigantic" in message and "bert_tiny" in message


def test_missing_corpus(tmp_path):
    assert "nothing/*.txt" in trainer.error(*TINY, f"--corpus={tmp_path}/nothing/*.txt",
                                            f"--model_dir={tmp_path}/m")


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n   \n")
    message = trainer.error(*TINY, f"--corpus={tmp_path}/*.txt", f"--model_dir={tmp_path}/m")
    assert str(tmp_path) in message and "no text" in message


def test_file_that_is_not_a_vocab(tmp_path, corpus):
    bad = tmp_path / "vocab.txt"
    bad.write_bytes(bytes(range(256)) * 4)
    assert "vocab.txt" in trainer.error(*TINY, f"--corpus={corpus}", f"--vocab_file={bad}",
                                        f"--model_dir={tmp_path}/m")


def test_sequence_longer_than_position_table(tmp_path):
    message = trainer.error("--max_seq_length=1024", f"--model_dir={tmp_path}")
    assert "--max_seq_length=1024" in message and "512" in message


def test_warmup_longer_than_the_run(tmp_path):
    assert "--warmup_steps must not exceed --train_steps" in trainer.error(
        "--train_steps=5", "--warmup_steps=10", f"--model_dir={tmp_path}")


def test_unwritable_model_dir_is_one_line_in_a_fresh_process(tmp_path, corpus):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code, output = trainer.run_fresh(*TINY, f"--corpus={corpus}",
                                     f"--model_dir={blocker}/model")
    trainer.assert_one_line_error(code, output, "a_file")
    # TensorFlow's start-up notices are not shown unless asked for.
    assert "oneDNN" not in output and "cuda" not in output.lower()


def test_mismatched_checkpoint_is_kept(trained, corpus, tmp_path):
    model_dir = trained[1]
    before = {name: os.path.getmtime(os.path.join(model_dir, name))
              for name in os.listdir(model_dir)}
    message = trainer.error("--model=bert_mini", "--max_seq_length=32", "--batch_size=8",
                            f"--corpus={corpus}", f"--model_dir={model_dir}",
                            f"--export_dir={tmp_path}/export", "--train_steps=40")
    assert model_dir in message
    after = {name: os.path.getmtime(os.path.join(model_dir, name))
             for name in os.listdir(model_dir)}
    assert after == before


def test_corrupt_checkpoint(trained, tmp_path):
    model_dir = str(tmp_path / "model")
    shutil.copytree(trained[1], model_dir)
    for name in os.listdir(model_dir):
        if ".data-" in name:
            with open(os.path.join(model_dir, name), "r+b") as f:
                f.truncate(100)
    message = trainer.error(*trained[0], f"--model_dir={model_dir}",
                            f"--export_dir={tmp_path}/export", "--train_steps=40")
    assert model_dir in message and "damaged" in message


def test_existing_export_version(trained):
    common, model_dir, export_dir, *_ = trained
    before = os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb"))
    message = trainer.error(*common, f"--model_dir={model_dir}", f"--export_dir={export_dir}",
                            "--train_steps=30", "--export_version=1")
    assert "already exists" in message
    assert os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb")) == before


def test_train_from_tfrecords(trained, corpus, tmp_path):
    vocab = os.path.join(trained[1], "vocab.txt")
    records = str(tmp_path / "pairs.tfrecord")
    output = Trainer("make_pretraining_data").run(
        f"--corpus={corpus}", f"--vocab_file={vocab}", "--max_seq_length=32",
        f"--output={records}", "--pair_epochs=2")
    assert f"to {records}" in output
    output = trainer.run(*TINY, f"--train_tfrecords={records}", f"--vocab_file={vocab}",
                         f"--model_dir={tmp_path}/model", "--train_steps=10", "--noexport")
    assert "step 10/10" in output
