"""trainers.finetune_bert --task=tag and --task=qa end to end from a tiny fabricated
checkpoint: training, eval scores, the exported signatures in a fresh process
against the trained model in this one, and errors naming the problem."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.convert import load_hf_bert
from kerasllm.export.qa_signatures import qa_signatures
from kerasllm.export.tagging_signatures import tagging_signatures
from kerasllm.evaluation.scores import answer_scores, classification_scores
from kerasllm.models.bert.span_qa import BertSpanQA
from kerasllm.models.bert.token_classifier import BertTokenClassifier
from tests.convert.tiny_checkpoint import TINY_CONFIG, tiny_tensors, write_checkpoint
from tests.fresh_process import serve_in_fresh_process
from tests.trainers.trainer_runs import Trainer, restore_trained

trainer = Trainer("finetune_bert")
NAMES = ["Anna", "Bob", "Carl", "Rosalind"]  # "Rosalind" is two pieces, Ros ##alind
OTHERS = ["met", "saw", "and", "in", "the", "park", "today", "with", "."]
FILLERS = ["the", "a", "big", "old", "king", "castle", "of", "denmark"]
ANSWERS = ["anna", "bob", "carl", "dora"]
VOCAB = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Anna", "Bob", "Carl",
                            "Ros", "##alind", *OTHERS, "who", "is", "it", "?", *FILLERS,
                            *ANSWERS]))
TAG_LABELS = ["O", "NAME"]  # "O" first, although "NAME" sorts before it
TAG_SEQ, QA_SEQ, MAX_ANSWER_LENGTH = 16, 24, 4
TAG_PROBES = ["Anna met Rosalind in the park .", "", "the park " * 20, "Bob  saw\tCarl today"]
QA_PROBES = [("who is it?", "the king is anna of denmark"), ("who?", ""),
             ("", "the castle is bob"), ("who is it?", "old " * 50 + "is dora")]
STEPS = ["--batch_size=8", "--epochs=1", "--steps_per_epoch=3", "--learning_rate=1e-3"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A cased two-layer BERT of hidden size 8 with random weights."""
    config = {**TINY_CONFIG, "vocab_size": len(VOCAB), "max_position_embeddings": 32}
    return write_checkpoint(tmp_path_factory.mktemp("tiny_bert"), config=config,
                            tensors=tiny_tensors(config), vocab=VOCAB,
                            tokenizer_config={"do_lower_case": False})


def tagged_sentences(count, seed):
    """(words, labels): random sentences whose capitalised words are NAME, the rest O."""
    rng = np.random.default_rng(seed)
    sentences = [[str(w) for w in rng.choice(NAMES + OTHERS, size=rng.integers(3, 8))]
                 for _ in range(count)]
    return [(words, ["NAME" if w[:1].isupper() else "O" for w in words]) for words in sentences]


def qa_rows(count, seed, fillers_before=(0, 7)):
    """"who is it?" over filler words holding "is <answer>"; every other row gives
    answer_start."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        before = [str(w) for w in rng.choice(FILLERS, rng.integers(*fillers_before))]
        answer = str(rng.choice(ANSWERS))
        prefix = " ".join([*before, "is"])
        row = {"question": "who is it?", "answer": answer,
               "context": " ".join([prefix, answer, *rng.choice(FILLERS, 2)])}
        if i % 2:
            row["answer_start"] = len(prefix) + 1
        rows.append(row)
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def read_metadata(export_path):
    with open(os.path.join(export_path, "assets.extra", "kerasllm.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def tag_run(checkpoint, tmp_path_factory):
    """(model_dir, export path, trainer output, dev sentences) of a 3-step tag run
    on CoNLL training and JSONL eval files."""
    base = tmp_path_factory.mktemp("tag")
    train, dev = tagged_sentences(24, seed=0), tagged_sentences(8, seed=1)
    (base / "train.conll").write_text("".join(
        "".join(f"{w}\t{label}\n" for w, label in zip(*sentence)) + "\n" for sentence in train))
    dev_file = write_jsonl(base / "dev.jsonl",
                           [{"words": words, "labels": labels} for words, labels in dev])
    output = trainer.run(
        "--task=tag", f"--init_checkpoint={checkpoint}", f"--train_file={base / 'train.conll'}",
        f"--eval_file={dev_file}", f"--model_dir={base / 'model'}",
        f"--export_dir={base / 'export'}", f"--max_seq_length={TAG_SEQ}", *STEPS)
    return str(base / "model"), str(base / "export" / "1"), output, dev


def test_tag_trains_scores_words_and_exports(tag_run):
    _, export_path, output, _ = tag_run
    assert "step 3/3" in output and "best epoch 1: eval accuracy" in output
    metadata = read_metadata(export_path)
    assert metadata["task"] == "tag" and metadata["label_names"] == TAG_LABELS
    assert metadata["best_epoch"] == 1
    assert set(metadata["eval_metrics"]) == {"accuracy", "macro_f1"}


def test_served_tags_equal_the_trained_model_and_its_eval_scores(tag_run, checkpoint,
                                                                  tmp_path):
    model_dir, export_path, _, dev = tag_run
    dev_texts = [" ".join(words) for words, _ in dev]
    served = serve_in_fresh_process(export_path, {"text": TAG_PROBES + dev_texts}, tmp_path)
    encoder, tokenizer, _ = load_hf_bert(checkpoint)
    tagger = restore_trained(BertTokenClassifier(encoder, 2).build_for_inputs(), model_dir)
    local = tagging_signatures(tagger, tokenizer, TAG_LABELS, TAG_SEQ)["tag"](
        tf.constant(TAG_PROBES + dev_texts))
    for name in ["labels", "words", "start_offsets", "end_offsets"]:
        np.testing.assert_array_equal(served[f"tag/{name}"], local[name].numpy(), err_msg=name)
    labels, words = served["tag/labels"], served["tag/words"]
    assert set(labels[0][:7]) <= {b"O", b"NAME"} and words[0][2] == b"Rosalind"
    assert not labels[1].any()  # the empty text has no words
    # 16 tokens hold [CLS], 14 words and [SEP]: the other 26 words are not tagged.
    assert b"" not in labels[2][:14] and set(labels[2][14:40]) == {b""}
    assert words[3][:4].tolist() == [b"Bob", b"saw", b"Carl", b"today"]
    # The trainer scored the same words the signature tags (each word's first piece).
    gold = [TAG_LABELS.index(label) for _, sentence in dev for label in sentence]
    predicted = [TAG_LABELS.index(label.decode()) for row, (words, _) in
                 zip(labels[len(TAG_PROBES):], dev) for label in row[:len(words)]]
    scores = classification_scores(np.array(gold), np.array(predicted), len(TAG_LABELS))
    assert scores == pytest.approx(read_metadata(export_path)["eval_metrics"], abs=1e-9)


@pytest.fixture(scope="module")
def qa_run(checkpoint, tmp_path_factory):
    """(model_dir, export path, trainer output, dev rows) of a 3-step qa run whose
    training file has one answer beyond QA_SEQ tokens."""
    base = tmp_path_factory.mktemp("qa")
    train = qa_rows(24, seed=0) + qa_rows(1, seed=2, fillers_before=(30, 31))
    dev = qa_rows(8, seed=1)
    output = trainer.run(
        "--task=qa", f"--init_checkpoint={checkpoint}",
        f"--train_file={write_jsonl(base / 'train.jsonl', train)}",
        f"--eval_file={write_jsonl(base / 'dev.jsonl', dev)}", f"--model_dir={base / 'model'}",
        f"--export_dir={base / 'export'}", f"--max_seq_length={QA_SEQ}",
        f"--max_answer_length={MAX_ANSWER_LENGTH}", *STEPS)
    return str(base / "model"), str(base / "export" / "1"), output, dev


def test_qa_skips_cut_off_answers_scores_answers_and_exports(qa_run):
    _, export_path, output, _ = qa_run
    assert "1 of 25 training examples skipped" in output
    assert "24 training examples, 3 steps per epoch" in output
    assert "best epoch 1: eval exact_match" in output
    metadata = read_metadata(export_path)
    assert metadata["task"] == "qa" and metadata["label_names"] == []
    assert metadata["max_answer_length"] == MAX_ANSWER_LENGTH
    assert set(metadata["eval_metrics"]) == {"exact_match", "f1"}


def test_served_answers_equal_the_trained_model_and_its_eval_scores(qa_run, checkpoint,
                                                                     tmp_path):
    model_dir, export_path, _, dev = qa_run
    questions = [q for q, _ in QA_PROBES] + [row["question"] for row in dev]
    contexts = [c for _, c in QA_PROBES] + [row["context"] for row in dev]
    served = serve_in_fresh_process(export_path, {"question": questions, "context": contexts},
                                    tmp_path)
    encoder, tokenizer, _ = load_hf_bert(checkpoint)
    span_qa = restore_trained(
        BertSpanQA(encoder, max_answer_length=MAX_ANSWER_LENGTH).build_for_inputs(), model_dir)
    local = {k: v.numpy() for k, v in qa_signatures(span_qa, tokenizer, QA_SEQ)["answer"](
        tf.constant(questions), tf.constant(contexts)).items()}
    for name in ["answer", "start_offset", "end_offset"]:
        np.testing.assert_array_equal(served[f"answer/{name}"], local[name], err_msg=name)
    np.testing.assert_allclose(served["answer/score"], local["score"], atol=1e-5)
    answers, starts, ends = (served[f"answer/{k}"] for k in
                             ["answer", "start_offset", "end_offset"])
    assert [c.encode()[s:e] for c, s, e in zip(contexts, starts, ends)] == answers.tolist()
    assert answers[1] == b"" and served["answer/score"][1] == 0  # no context, no answer
    for row, answer in enumerate(answers):
        if row != 1:
            assert answer and 0 < served["answer/score"][row] <= 1
            assert len(answer.split()) <= MAX_ANSWER_LENGTH  # one piece per word here
    # The trainer scored the answers the signature gives.
    scores = answer_scores([a.decode() for a in answers[len(QA_PROBES):]],
                           [row["answer"] for row in dev])
    assert scores == pytest.approx(read_metadata(export_path)["eval_metrics"], abs=1e-9)


def test_bad_eval_label_names_file_and_line(checkpoint, tmp_path):
    (tmp_path / "train.conll").write_text("Anna\tNAME\nmet\tO\n\nBob\tNAME\n")
    (tmp_path / "dev.conll").write_text("Anna\tNAME\n\nParis\tPLACE\n")
    message = trainer.error(
        "--task=tag", f"--init_checkpoint={checkpoint}", f"--train_file={tmp_path / 'train.conll'}",
        f"--eval_file={tmp_path / 'dev.conll'}", f"--model_dir={tmp_path / 'model'}")
    assert f"{tmp_path / 'dev.conll'}:3: unknown label 'PLACE'" in message


def test_qa_has_no_label_set(checkpoint, tmp_path):
    train_file = write_jsonl(tmp_path / "train.jsonl", qa_rows(2, seed=0))
    message = trainer.error("--task=qa", f"--init_checkpoint={checkpoint}",
                            f"--train_file={train_file}", "--labels=a,b",
                            f"--model_dir={tmp_path / 'model'}")
    assert "--task=qa has no label set" in message
