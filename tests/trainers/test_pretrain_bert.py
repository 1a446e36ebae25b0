"""`python -m trainers.pretrain_bert` end to end, and its one-line errors on bad input."""
import os
import subprocess
import sys

import pytest

from kerasllm.data.shakespeare import default_corpus_files
from tests.trainers.trainer_runs import trainer_runner

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--model=bert_tiny", "--max_seq_length=32", "--batch_size=8", "--vocab_size=400",
        "--log_every=5"]
run_trainer, assert_one_line_error = trainer_runner("pretrain_bert")


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
    first = run_trainer(*common, *dirs, "--train_steps=20")
    second = run_trainer(*common, *dirs, "--train_steps=30")
    return common, model_dir, export_dir, first, second


def test_train_export_and_resume(trained):
    common, model_dir, export_dir, (code1, out1), (code2, out2) = trained
    assert code1 == 0, out1[-3000:]
    assert code2 == 0, out2[-3000:]
    assert "step 20/20" in out1
    assert "resum" in out2.lower() and "step 20" in out2  # restored, not restarted
    assert "step 30/30" in out2
    assert sorted(os.listdir(export_dir)) == ["1", "2"]
    assert os.path.exists(os.path.join(model_dir, "vocab.txt"))


def test_export_passes_serving_check_in_fresh_process(trained):
    export_dir = trained[2]
    result = subprocess.run([sys.executable, "-m", "kerasllm.export.check",
                             os.path.join(export_dir, "2")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "signature fill_mask: ok" in result.stdout


def test_unknown_model(tmp_path):
    code, out = run_trainer("--model=bert_gigantic", f"--model_dir={tmp_path}")
    assert_one_line_error(code, out, "bert_gigantic", "bert_tiny")


def test_missing_corpus(tmp_path):
    code, out = run_trainer(*TINY, f"--corpus={tmp_path}/nothing/*.txt",
                            f"--model_dir={tmp_path}/m")
    assert_one_line_error(code, out, "nothing/*.txt")


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n   \n")
    code, out = run_trainer(*TINY, f"--corpus={tmp_path}/*.txt", f"--model_dir={tmp_path}/m")
    assert_one_line_error(code, out, str(tmp_path), "no text")


def test_file_that_is_not_a_vocab(tmp_path, corpus):
    bad = tmp_path / "vocab.txt"
    bad.write_bytes(bytes(range(256)) * 4)
    code, out = run_trainer(*TINY, f"--corpus={corpus}", f"--vocab_file={bad}",
                            f"--model_dir={tmp_path}/m")
    assert_one_line_error(code, out, "vocab.txt")


def test_sequence_longer_than_position_table(tmp_path):
    code, out = run_trainer("--max_seq_length=1024", f"--model_dir={tmp_path}")
    assert_one_line_error(code, out, "--max_seq_length=1024", "512")


def test_unwritable_model_dir(tmp_path, corpus):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code, out = run_trainer(*TINY, f"--corpus={corpus}", f"--model_dir={blocker}/model")
    assert_one_line_error(code, out, "a_file")


def test_mismatched_checkpoint_is_kept(trained, corpus, tmp_path):
    model_dir = trained[1]
    before = {name: os.path.getmtime(os.path.join(model_dir, name))
              for name in os.listdir(model_dir)}
    code, out = run_trainer("--model=bert_mini", "--max_seq_length=32", "--batch_size=8",
                            f"--corpus={corpus}", f"--model_dir={model_dir}",
                            f"--export_dir={tmp_path}/export", "--train_steps=40",
                            "--warmup_steps=5")
    assert_one_line_error(code, out, model_dir)
    after = {name: os.path.getmtime(os.path.join(model_dir, name))
             for name in os.listdir(model_dir)}
    assert after == before


def test_corrupt_checkpoint(trained, corpus, tmp_path):
    import shutil
    model_dir = str(tmp_path / "model")
    shutil.copytree(trained[1], model_dir)
    for name in os.listdir(model_dir):
        if ".data-" in name:
            with open(os.path.join(model_dir, name), "r+b") as f:
                f.truncate(100)
    code, out = run_trainer(*trained[0], f"--model_dir={model_dir}",
                            f"--export_dir={tmp_path}/export", "--train_steps=40")
    assert_one_line_error(code, out, model_dir)


def test_existing_export_version(trained, tmp_path):
    common, model_dir, export_dir, *_ = trained
    before = os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb"))
    code, out = run_trainer(*common, f"--model_dir={model_dir}", f"--export_dir={export_dir}",
                            "--train_steps=30", "--export_version=1")
    assert_one_line_error(code, out, "already exists")
    assert os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb")) == before


def test_train_from_tfrecords(trained, corpus, tmp_path):
    vocab = os.path.join(trained[1], "vocab.txt")
    records = str(tmp_path / "pairs.tfrecord")
    result = subprocess.run(
        [sys.executable, "-m", "trainers.make_pretraining_data", f"--corpus={corpus}",
         f"--vocab_file={vocab}", "--max_seq_length=32", f"--output={records}",
         "--pair_epochs=2"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote" in result.stdout
    code, out = run_trainer(*TINY, f"--train_tfrecords={records}", f"--vocab_file={vocab}",
                            f"--model_dir={tmp_path}/model", "--train_steps=10",
                            "--warmup_steps=2", "--noexport")
    assert code == 0, out[-3000:]
    assert "step 10/10" in out
