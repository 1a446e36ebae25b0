"""trainers.finetune_bert end to end from MiniLM, the exported signatures in a fresh
process, and its errors on bad input (one of them as the one line a user sees)."""
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.convert import load_hf_bert
from kerasllm.convert.minilm import minilm_model_dir
from kerasllm.models.bert.classifier import BertClassifier
from tests.fresh_process import serve_in_fresh_process
from tests.trainers.trainer_runs import Trainer, restore_trained

trainer = Trainer("finetune_bert")
SEQ = 16
POSITIVE = ["a wonderful, moving film", "great acting and a smart script", "i loved it"]
NEGATIVE = ["a dull, lifeless mess", "terrible acting and a stupid plot", "i hated it"]
PROBE_TEXTS = ["what a wonderful film", "a stupid, dull plot", "", "word " * 100]


def write_tsv(path, rows, columns=("text", "label")):
    path.write_text("\t".join(columns) + "\n"
                    + "".join("\t".join(map(str, row)) + "\n" for row in rows))
    return str(path)


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    rows = [(text, "pos") for text in POSITIVE] + [(text, "neg") for text in NEGATIVE]
    # Training labels of varied confidence: the soft-target loss runs in the trainer.
    train_rows = [row + (0.7 + 0.1 * (i % 4),) for i, row in enumerate(rows * 4)]
    return (write_tsv(directory / "train.tsv", train_rows, ("text", "label", "confidence")),
            write_tsv(directory / "dev.tsv", rows))


@pytest.fixture(scope="module")
def finetuned(data_files, tmp_path_factory):
    base = tmp_path_factory.mktemp("run")
    model_dir, export_dir = str(base / "model"), str(base / "export")
    output = trainer.run(
        "--init_checkpoint=minilm", f"--train_file={data_files[0]}",
        f"--eval_file={data_files[1]}", f"--model_dir={model_dir}", f"--export_dir={export_dir}",
        f"--max_seq_length={SEQ}", "--batch_size=8", "--epochs=1", "--steps_per_epoch=3",
        "--learning_rate=1e-4", "--encoder_dropout=0", "--label_smoothing=0.1")
    return model_dir, os.path.join(export_dir, "1"), output


def test_finetune_evaluates_and_exports(finetuned):
    _, export_path, output = finetuned
    assert "step 3/3" in output and "best epoch 1: eval accuracy" in output
    with open(os.path.join(export_path, "assets.extra", "kerasllm.json")) as f:
        metadata = json.load(f)
    assert metadata["label_names"] == ["neg", "pos"] and metadata["label_confidence"]
    assert metadata["label_smoothing"] == 0.1
    assert metadata["best_epoch"] == 1 and set(metadata["eval_metrics"]) == {"accuracy",
                                                                            "macro_f1"}
    assert metadata["config"]["dropout"] == metadata["config"]["attention_dropout"] == 0.0
    assert metadata["family"] == "bert" and metadata["tokenizer"]["lowercase"]
    assert metadata["signatures"] == ["classify", "classify_pair", "serving_default"]


def in_process_probabilities(model_dir, texts):
    """The trained classifier restored from its checkpoint, run on `texts` in Python."""
    encoder, tokenizer, _ = load_hf_bert(minilm_model_dir())
    classifier = restore_trained(
        BertClassifier(encoder, 2, pooling="mean").build_for_inputs(), model_dir)
    inputs = tokenizer.pack([tokenizer.tokenize(texts)], SEQ)
    return tf.nn.softmax(classifier(inputs, training=False)["logits"]).numpy()


def test_exported_classify_matches_the_model_in_a_fresh_process(finetuned, tmp_path):
    model_dir, export_path, _ = finetuned
    served = serve_in_fresh_process(
        export_path, {"text": PROBE_TEXTS, "text_b": ["", "plot", "x", ""]}, tmp_path)
    probabilities = served["classify/probabilities"]
    assert probabilities.shape == (4, 2) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, in_process_probabilities(model_dir, PROBE_TEXTS),
                               atol=1e-5)
    np.testing.assert_array_equal(served["classify/label_id"], probabilities.argmax(-1))
    assert [label.decode() for label in served["classify/label"]] == \
        [["neg", "pos"][i] for i in probabilities.argmax(-1)]
    np.testing.assert_allclose(served["serving_default/probabilities"], probabilities)
    assert served["classify_pair/probabilities"].shape == (4, 2)
    # An empty text_b is classified as the single text.
    np.testing.assert_allclose(served["classify_pair/probabilities"][[0, 3]],
                               probabilities[[0, 3]], atol=1e-6)


def test_a_resumed_run_exports_the_best_epoch_of_both_processes(finetuned, data_files,
                                                                tmp_path):
    first_model_dir, _, _ = finetuned
    model_dir, export_dir = str(tmp_path / "model"), str(tmp_path / "export")
    shutil.copytree(first_model_dir, model_dir)
    output = trainer.run(
        f"--train_file={data_files[0]}", f"--eval_file={data_files[1]}",
        f"--model_dir={model_dir}", f"--export_dir={export_dir}", f"--max_seq_length={SEQ}",
        "--batch_size=8", "--epochs=2", "--steps_per_epoch=3", "--learning_rate=1e-4")
    assert "resumed from" in output and "step 6/6" in output
    with open(os.path.join(export_dir, "1", "assets.extra", "kerasllm.json")) as f:
        metadata = json.load(f)
    history = {record["step"] // 3: record for record in metadata["validation"]}
    assert sorted(history) == [1, 2]  # epoch 1 was scored by the first process
    best = 2 if history[2]["accuracy"] >= history[1]["accuracy"] else 1
    assert metadata["best_epoch"] == best and metadata["exported_step"] == 3 * best
    served = serve_in_fresh_process(os.path.join(export_dir, "1"), {"text": PROBE_TEXTS},
                                    tmp_path)
    np.testing.assert_allclose(
        served["classify/probabilities"],
        in_process_probabilities(first_model_dir if best == 1 else model_dir, PROBE_TEXTS),
        atol=1e-5)


def test_packaged_data_set_is_for_classification_only(tmp_path):
    message = trainer.error("--task=tag", "--dataset=rt_sentences", f"--model_dir={tmp_path}")
    assert "--dataset=rt_sentences is a classification data set" in message
    assert "--task=tag" in message


def test_unknown_eval_label_names_file_and_line_in_one_line(data_files, tmp_path):
    eval_file = write_tsv(tmp_path / "dev.tsv", [("good", "pos"), ("so so", "meh")])
    code, output = trainer.run_fresh(f"--train_file={data_files[0]}",
                                     f"--eval_file={eval_file}",
                                     f"--model_dir={tmp_path / 'model'}")
    trainer.assert_one_line_error(code, output, f"{eval_file}:3: unknown label 'meh'")


@pytest.mark.slow
def test_rotten_tomatoes_accuracy(tmp_path):
    """The README's recipe (recipes/minilm_rt_sentences.flags): MiniLM, mean pooling,
    2 epochs, batch 32, lr 1e-4, 64 tokens, no dropout inside the encoder, moving
    average of the weights (momentum 0.99), soft targets from the raters'
    agreement; 7 to 11 minutes on 2 CPU cores. Measured for seeds 0 (this test's,
    the same on 1 and 2 cores) to 5: 87.28%, 86.71%, 86.57%, 87.13%, 87.32%,
    87.23% (docs/results/rt_sentences.md); the bound is the goal it was tuned for."""
    code, output = trainer.run_fresh("--flagfile=recipes/minilm_rt_sentences.flags",
                                     f"--model_dir={tmp_path / 'model'}",
                                     f"--export_dir={tmp_path / 'export'}", timeout=1800)
    assert code == 0, output[-3000:]
    with open(tmp_path / "export" / "1" / "assets.extra" / "kerasllm.json") as f:
        accuracy = json.load(f)["eval_metrics"]["accuracy"]
    assert accuracy >= 0.865, output[-3000:]
