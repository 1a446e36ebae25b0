"""Labelled-text files (TSV, CSV, JSONL), their line-numbered errors, and the batches."""
import json

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.data.labeled_text import (LabeledExample, LabeledTextError,
                                        classification_dataset, classification_dataset_fn,
                                        read_labeled_text)
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "film", "plot", "."]


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return str(path)


def test_tsv_with_pairs_and_inferred_sorted_labels(tmp_path):
    path = write(tmp_path, "a.tsv", "label\ttext\ttext_b\npos\tgood film\tyes\n"
                                    "neg\tbad plot\t\nneutral\tfilm\tno\n")
    examples, labels = read_labeled_text(path)
    assert labels == ("neg", "neutral", "pos")
    assert examples == [LabeledExample("good film", 2, "yes"), LabeledExample("bad plot", 0),
                        LabeledExample("film", 1, "no")]


def test_csv_quoting_and_given_label_order(tmp_path):
    path = write(tmp_path, "a.csv", 'text,label\r\n"good, really\ngood",1\r\nbad,0\r\n')
    examples, labels = read_labeled_text(path, label_names=["0", "1"])
    assert labels == ("0", "1")
    assert examples == [LabeledExample("good, really\ngood", 1), LabeledExample("bad", 0)]


def test_jsonl_with_integer_labels(tmp_path):
    lines = [{"text": "good", "label": 1}, {"text": "bad", "text_b": "plot", "label": 0}]
    path = write(tmp_path, "a.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    examples, labels = read_labeled_text(path)
    assert labels == ("0", "1")
    assert examples == [LabeledExample("good", 1), LabeledExample("bad", 0, "plot")]


def test_confidence_column_and_field_default_to_certain(tmp_path):
    tsv = write(tmp_path, "a.tsv", "text\tlabel\tconfidence\ngood\tpos\t0.75\nbad\tneg\t\n")
    assert read_labeled_text(tsv)[0] == [LabeledExample("good", 1, confidence=0.75),
                                         LabeledExample("bad", 0, confidence=1.0)]
    lines = [{"text": "good", "label": "pos", "confidence": 0.6},
             {"text": "bad", "label": "neg", "confidence": 1}, {"text": "film", "label": "neg"}]
    jsonl = write(tmp_path, "a.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    assert [e.confidence for e in read_labeled_text(jsonl)[0]] == [0.6, 1.0, 1.0]


@pytest.mark.parametrize("name, content, labels, message", [
    ("a.tsv", "text\tlabel\tconfidence\ngood\tpos\t1\nbad\tneg\tsure\n", None,
     r"a.tsv:3: confidence 'sure' is not a number"),
    ("a.csv", "text,label,confidence\ngood,pos,1\nbad,neg,1.5\n", None,
     r"a.csv:3: confidence 1.5 is not in \(0, 1\]"),
    ("a.csv", "text,label,confidence\ngood,pos,0\n", None, r"a.csv:2: confidence 0.0 is not in"),
    ("a.tsv", "text\tlabel\tconfidence\ngood\tpos\t1\nbad\tneg\t0.4\n", None,
     r"a.tsv:3: confidence 0.4 is below 1/2 \(the number of labels\)"),
    ("a.jsonl", '{"text": "good", "label": "pos", "confidence": "high"}\n', None,
     r"a.jsonl:1: field 'confidence' must be a number, got str"),
    ("a.tsv", "text\tlabel\ngood\tpos\nbad\tmeh\n", ["neg", "pos"],
     r"a.tsv:3: unknown label 'meh'"),
    ("a.tsv", "text\tlabel\ngood\tpos\n \tneg\n", None, r"a.tsv:3: empty text"),
    ("a.tsv", "text\tlabel\ngood\tpos\n\nbad\tneg\n", None, r"a.tsv:3: empty line"),
    ("a.tsv", "text\tlabel\ngood\tpos\nbad\tneg\textra\n", None,
     r"a.tsv:3: 3 columns, but the header has 2"),
    ("a.csv", "text,label\ngood,pos\nbad\n", None, r"a.csv:3: 1 columns, but the header has 2"),
    ("a.csv", "sentence,label\ngood,pos\n", None, r"a.csv:1: the header must name"),
    ("a.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad", "label": \n', None,
     r"a.jsonl:2: bad JSON"),
    ("a.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad"}\n', None,
     r"a.jsonl:2: missing field\(s\) label"),
    ("a.jsonl", '{"text": "good", "label": "pos"}\n["bad", "neg"]\n', None,
     r"a.jsonl:2: expected a JSON object"),
    ("a.txt", "good\tpos\n", None, r"unknown format '.txt'"),
    ("a.tsv", "text\tlabel\n", None, r"a.tsv has no examples"),
])
def test_errors_name_file_and_line(tmp_path, name, content, labels, message):
    path = write(tmp_path, name, content)
    with pytest.raises(LabeledTextError, match=message):
        read_labeled_text(path, labels)


def test_missing_file(tmp_path):
    with pytest.raises(LabeledTextError, match="cannot read"):
        read_labeled_text(str(tmp_path / "none.tsv"))


EXAMPLES = [LabeledExample("good film", 1), LabeledExample("bad plot .", 0, "film"),
            LabeledExample("good good good good good good good good", 1)]


def test_eval_batches_go_shortest_first_pack_pairs_and_truncate():
    tokenizer = WordPieceTokenizer(VOCAB)
    longest_first = EXAMPLES[::-1]
    batches = list(classification_dataset(longest_first, tokenizer, max_seq_length=8,
                                          batch_size=2, training=False))
    assert [len(b["labels"]) for b in batches] == [2, 1]
    first = {k: v.numpy() for k, v in batches[0].items()}
    assert first["labels"].tolist() == [1, 0]
    # [CLS] good film [SEP] / [CLS] bad plot . [SEP] film [SEP]
    assert first["token_ids"].tolist() == [[2, 5, 7, 3, 0, 0, 0, 0], [2, 6, 8, 9, 3, 7, 3, 0]]
    assert first["segment_ids"][1].tolist() == [0, 0, 0, 0, 0, 1, 1, 0]
    assert first["padding_mask"].sum(axis=1).tolist() == [4, 7]
    assert batches[1]["padding_mask"].numpy().sum() == 8  # truncated to max_seq_length
    exact = next(iter(classification_dataset(longest_first, tokenizer, max_seq_length=8,
                                             batch_size=2, training=False,
                                             length_multiple=1)))
    assert exact["token_ids"].shape == (2, 7)  # as long as its longest example


def test_training_dataset_fn_repeats_shuffles_shards_and_buckets_by_length():
    tokenizer = WordPieceTokenizer(VOCAB)
    examples = [LabeledExample("good " * (i + 1), i % 2) for i in range(8)]
    dataset_fn = classification_dataset_fn(examples, tokenizer, max_seq_length=12,
                                           global_batch_size=4, seed=1)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    batches = [{k: v.numpy() for k, v in b.items()} for b in dataset_fn(context).take(12)]
    # Pipeline 1 reads examples 1, 3, 5, 7: texts of 2, 4, 6, 8 words, so 4, 6, 8, 10
    # tokens with [CLS] and [SEP]. Buckets are 8 tokens wide: {4, 6} and {8, 10}
    # share batches, each trimmed to its longest example rounded up to 8 (at most 12).
    lengths = [b["padding_mask"].sum(axis=1).tolist() for b in batches]
    assert all(sorted(row) in ([4, 6], [8, 10]) for row in lengths)
    assert all(b["token_ids"].shape == (2, 8 if max(row) <= 8 else 12)
               for b, row in zip(batches, lengths))
    assert all(b["labels"].tolist() == [1, 1] for b in batches)
    counts = np.unique(np.concatenate(lengths), return_counts=True)
    assert counts[0].tolist() == [4, 6, 8, 10] and min(counts[1]) >= 4  # every one, repeated
    assert len({tuple(row) for row in lengths}) > 2  # reshuffled between epochs


def test_narrower_length_buckets_pad_less():
    tokenizer = WordPieceTokenizer(VOCAB)
    examples = [LabeledExample("good " * (i // 4 + 1) * 2, i % 2) for i in range(16)]
    dataset_fn = classification_dataset_fn(examples, tokenizer, max_seq_length=12,
                                           global_batch_size=4, seed=1, length_multiple=2)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    batches = [{k: v.numpy() for k, v in b.items()} for b in dataset_fn(context).take(8)]
    # Pipeline 1 has two examples each of 4, 6, 8 and 10 tokens; each length has a
    # bucket of its own (2 tokens wide), so a batch holds one length twice, unpadded.
    lengths = [b["padding_mask"].sum(axis=1).tolist() for b in batches]
    assert all(row[0] == row[1] for row in lengths)
    assert all(b["token_ids"].shape == (2, row[0]) for b, row in zip(batches, lengths))
    assert len({row[0] for row in lengths}) > 1


def test_only_training_batches_carry_label_confidence():
    tokenizer = WordPieceTokenizer(VOCAB)
    examples = [LabeledExample("good " * (i % 2 + 1), i % 2, confidence=0.5 + i / 16)
                for i in range(8)]
    batches = classification_dataset(examples, tokenizer, max_seq_length=8, batch_size=2,
                                     training=True, seed=0).take(8)
    confidence_of = {e.label: set() for e in examples}
    for e in examples:
        confidence_of[e.label].add(np.float32(e.confidence))
    for b in batches:
        for label, confidence in zip(b["labels"].numpy(), b["label_confidence"].numpy()):
            assert confidence in confidence_of[label]
    eval_batch = next(iter(classification_dataset(examples, tokenizer, max_seq_length=8,
                                                  batch_size=2, training=False)))
    assert "label_confidence" not in eval_batch
    certain = next(iter(classification_dataset(EXAMPLES, tokenizer, max_seq_length=8,
                                               batch_size=2, training=True, seed=0)))
    assert "label_confidence" not in certain  # hard labels train as before


def test_too_few_training_examples_is_named():
    with pytest.raises(ValueError, match="cannot fill one batch"):
        classification_dataset(EXAMPLES, WordPieceTokenizer(VOCAB), max_seq_length=8,
                               batch_size=4, training=True)
