"""trainers.distill_bert end to end: a tiny teacher made by finetune_bert, distilled
into a smaller fresh student that can only learn from the teacher (its labels are
scrambled), then the student's export on raw text; and its errors on bad input."""
import itertools
import os

import numpy as np
import pytest
import tensorflow as tf

import kerasllm.export
from kerasllm.models import BertEncoder, registry
from kerasllm.pretrained.presets import save_preset
from kerasllm.tokenizers import WordPieceTokenizer
from kerasllm.tokenizers.wordpiece import RESERVED_TOKENS
from tests.trainers.test_finetune_bert import write_tsv
from tests.trainers.trainer_runs import Trainer, export_metadata

trainer = Trainer("distill_bert")
GOOD = ["great", "wonderful", "lovely", "superb"]
BAD = ["awful", "dull", "boring", "terrible"]
NOUNS = ["film", "plot", "acting", "script", "story", "cast", "score", "ending"]
# Texts of several lengths: the teacher scores them shortest first, and each score
# must still reach its own example.
TEXTS = [f"{adjective} {noun}" + " indeed" * (i % 3)
         for i, (adjective, noun) in enumerate(itertools.product(GOOD + BAD, NOUNS))]
TRUE_LABELS = ["pos" if text.split()[0] in GOOD else "neg" for text in TEXTS]
SEQ = 16


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """(export root, data directory) of a bert_tiny classifier fine-tuned by
    finetune_bert from random weights saved as a preset with a tiny vocabulary."""
    directory = tmp_path_factory.mktemp("teacher")
    words = sorted({word for text in TEXTS for word in text.split()})
    tokenizer = WordPieceTokenizer(list(RESERVED_TOKENS) + words)
    encoder = BertEncoder(registry.get("bert_tiny").replace(
        vocab_size=tokenizer.vocab_size, max_sequence_length=32, dropout=0.0,
        attention_dropout=0.0)).build_for_inputs()
    preset = save_preset(encoder, str(directory / "preset"), tokenizer=tokenizer)
    train_file = write_tsv(directory / "train.tsv", zip(TEXTS, TRUE_LABELS))
    export_root = str(directory / "export")
    Trainer("finetune_bert").run(
        f"--init_checkpoint={preset}", f"--train_file={train_file}",
        f"--model_dir={directory / 'model'}", f"--export_dir={export_root}",
        f"--max_seq_length={SEQ}", "--batch_size=16", "--epochs=6", "--learning_rate=2e-3",
        "--dropout=0", "--warmup_steps=2", "--log_every=100")
    return export_root, directory


@pytest.fixture(scope="module")
def distilled(teacher, tmp_path_factory):
    teacher_root, data = teacher
    # Labels that say nothing of the text: only the teacher can teach the student (and
    # no eval file, whose scores against these labels could pick no epoch).
    scrambled = [("pos", "neg")[i % 2] for i in range(len(TEXTS))]
    train_file = write_tsv(data / "scrambled.tsv", zip(TEXTS, scrambled))
    base = tmp_path_factory.mktemp("student")
    output = trainer.run(
        f"--teacher={teacher_root}", "--student=bert_tiny",
        "--student_settings=num_layers=1,hidden_size=64,intermediate_size=128",
        f"--train_file={train_file}", f"--model_dir={base / 'model'}",
        f"--export_dir={base / 'export'}", f"--max_seq_length={SEQ}", "--batch_size=16",
        "--epochs=6", "--learning_rate=3e-3",
        "--temperature=2", "--alpha=1", "--dropout=0", "--encoder_dropout=0",
        "--warmup_steps=2", "--log_every=8")
    return os.path.join(str(base / "export"), "1"), output


def test_the_student_learns_the_teachers_labels_and_exports_as_a_classifier(teacher,
                                                                          distilled):
    export_path, output = distilled
    assert "scoring the 64 training examples with the teacher" in output
    assert "teacher_agreement" in output
    teacher_labels = kerasllm.export.load(teacher[0]).classify(text=TEXTS)["label"]
    # The teacher learned its data, so agreeing with it is far from chance.
    assert np.mean(np.array(teacher_labels) == TRUE_LABELS) >= 0.9
    student = kerasllm.export.load(export_path)
    assert set(student.signatures) == {"classify", "classify_pair", "serving_default"}
    served = student.classify(text=TEXTS)
    assert served["probabilities"].shape == (len(TEXTS), 2)
    agreement = np.mean(np.array(served["label"]) == np.array(teacher_labels))
    assert agreement >= 0.85, agreement
    metadata = export_metadata(export_path)
    assert metadata["label_names"] == ["neg", "pos"]
    assert (metadata["temperature"], metadata["alpha"]) == (2.0, 1.0)
    assert metadata["config"]["num_layers"] == 1 and metadata["config"]["hidden_size"] == 64
    assert metadata["teacher"] == os.path.join(teacher[0], "1")
    # The student reads text with the teacher's tokenizer, as recorded for a next round.
    assert metadata["tokenizer_sha256"] == export_metadata(metadata["teacher"])[
        "tokenizer_sha256"]
    assert metadata["tokenizer_source"] == str(teacher[1] / "preset")


def test_bad_settings_are_named_before_any_work(tmp_path):
    model_dir = f"--model_dir={tmp_path / 'model'}"
    assert "temperature must be above 0, got 0.0" in trainer.error("--temperature=0",
                                                                     model_dir)
    assert "alpha (the soft targets' weight) must be in [0, 1], got 1.5" in trainer.error(
        "--alpha=1.5", model_dir)
    assert "pass either --student" in trainer.error(
        "--student=bert_mini", "--student_init_checkpoint=minilm", model_dir)
    message = trainer.error(f"--teacher={tmp_path / 'missing'}", model_dir)
    assert f"no teacher export at {tmp_path / 'missing'}" in message


def test_the_minilm_teacher_names_the_command_that_makes_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where no recipe has exported anything
    message = trainer.error("--teacher=minilm", "--dataset=rt_sentences")
    assert "saved_models/minilm_rt_sentences, which holds no export yet" in message
    assert ("python -m trainers.finetune_bert --flagfile=recipes/minilm_rt_sentences.flags"
            in message)


def test_a_teacher_that_is_no_classifier_is_refused(tmp_path):
    module = tf.Module()
    module.embed = tf.function(lambda text: {"length": tf.strings.length(text)},
                               input_signature=[tf.TensorSpec([None], tf.string)])
    tf.saved_model.save(module, str(tmp_path / "export" / "1"),
                        signatures={"serving_default": module.embed})
    message = trainer.error(f"--teacher={tmp_path / 'export'}",
                            f"--model_dir={tmp_path / 'model'}")
    assert "is not a classifier export (its signatures: serving_default)" in message


def test_the_teachers_labels_must_be_the_datas(teacher, tmp_path):
    three = write_tsv(tmp_path / "three.tsv", [("great film", "pos"), ("dull plot", "neg"),
                                               ("a film", "meh")] * 4)
    message = trainer.error(f"--teacher={teacher[0]}", f"--train_file={three}",
                            f"--model_dir={tmp_path / 'model'}")
    assert "classifies into 2 labels (neg, pos), the data has 3 (meh, neg, pos)" in message
