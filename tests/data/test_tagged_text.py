"""Tagged-text files (JSONL, CoNLL), their line-numbered errors, and word labels
aligned to WordPiece pieces as the `tag` signature reads them."""
import json

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.data.batching import packed_dataset, packed_dataset_fn
from kerasllm.data.tagged_text import (TaggedExample, TaggedTextError, read_tagged_text,
                                       tagging_inputs)
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from kerasllm.tokenizers.word_offsets import tokenize_words_with_offsets

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Anna", "Ros", "##alind", "met", "in",
         "the", "park", ".", "U", "S"]
O, NAME, PLACE = 0, 1, 2


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return str(path)


def test_conll_sentences_skip_document_starts_and_put_o_first(tmp_path):
    path = write(tmp_path, "a.conll", "-DOCSTART-\tO\n\nAnna\tNAME\r\nmet\tO\r\n\n\n\n"
                                      "Rosalind\tNAME\nin\tO\nU.S.\tPLACE\n")
    examples, labels = read_tagged_text(path)
    assert labels == ("O", "NAME", "PLACE")  # "O" first, the rest sorted
    assert examples == [TaggedExample(("Anna", "met"), (NAME, O)),
                        TaggedExample(("Rosalind", "in", "U.S."), (NAME, O, PLACE))]


def test_jsonl_with_given_label_order(tmp_path):
    path = write(tmp_path, "a.jsonl", json.dumps({"words": ["Anna", "met"],
                                                  "labels": ["NAME", "O"]}) + "\n")
    examples, labels = read_tagged_text(path, label_names=["NAME", "O", "PLACE"])
    assert labels == ("NAME", "O", "PLACE")
    assert examples == [TaggedExample(("Anna", "met"), (0, 1))]


@pytest.mark.parametrize("name, content, labels, message", [
    ("a.jsonl", '{"words": ["Anna", "met"], "labels": ["NAME"]}\n', None,
     r"a.jsonl:1: 2 words but 1 labels"),
    ("a.jsonl", '{"words": ["Anna"], "labels": ["NAME"]}\n\n', None, r"a.jsonl:2: empty line"),
    ("a.jsonl", '{"words": ["Anna"], "labels": ["NAME"]}\n{"words": ["Bob"]}\n', None,
     r"a.jsonl:2: missing field\(s\) labels"),
    ("a.jsonl", '{"words": "Anna", "labels": ["NAME"]}\n', None,
     r"a.jsonl:1: field 'words' must be a list of strings, got str"),
    ("a.jsonl", '{"words": [], "labels": []}\n', None, r"a.jsonl:1: a sentence without words"),
    ("a.jsonl", '{"words": ["Anna"], "labels": ["NAME"]}\n{"words": ["x"], "labels": ["Y"]}\n',
     ["O", "NAME"], r"a.jsonl:2: unknown label 'Y'; known labels: O, NAME"),
    ("a.jsonl", '{"words": ["Anna"], "labels": [""]}\n', None,
     r"a.jsonl:1: empty label for the word 'Anna'"),
    ("a.conll", "Anna\tNAME\n\nmet\tO\nthe\tpark\tO\n", None,
     r"a.conll:4: expected word<TAB>label, got 3 tab-separated field\(s\)"),
    ("a.conll", "Anna NAME\n", None, r"a.conll:1: expected word<TAB>label, got 1"),
    ("a.tsv", "Anna\tNAME\n \tO\n", None, r"a.tsv:2: empty word"),
    ("a.tsv", "text\tlabel\na fine film\tpositive\n", None,
     r"a.tsv:2: 'a fine film' is several words.*--task=classify"),
    ("a.conll", "Anna\tNAME\n\nmet\tO\nin\tPLACE\n", ["O", "NAME"],
     r"a.conll:4: unknown label 'PLACE'"),
    ("a.conll", "\n\n-DOCSTART-\tO\n", None, r"a.conll has no examples"),
    ("a.csv", "Anna,NAME\n", None, r"unknown format '.csv'"),
])
def test_errors_name_file_and_line(tmp_path, name, content, labels, message):
    path = write(tmp_path, name, content)
    with pytest.raises(TaggedTextError, match=message):
        read_tagged_text(path, labels)


def test_missing_file(tmp_path):
    with pytest.raises(TaggedTextError, match="cannot read"):
        read_tagged_text(str(tmp_path / "none.conll"))


def columns(inputs):
    return {name: value.to_list() for name, value in inputs.examples.columns.items()}


def test_labels_sit_on_each_words_first_piece():
    tokenizer = WordPieceTokenizer(VOCAB, lowercase=False)
    examples = [TaggedExample(("Anna", "met", "Rosalind", "."), (NAME, O, NAME, O)),
                TaggedExample(("in", "U.S.", "park"), (O, PLACE, O))]
    inputs = tagging_inputs(examples, tokenizer, max_seq_length=16)
    got = columns(inputs)
    # [CLS] Anna met Ros ##alind . [SEP] / [CLS] in U . S . park [SEP]
    assert got["token_ids"] == [[2, 5, 8, 6, 7, 12, 3], [2, 9, 13, 12, 14, 12, 11, 3]]
    assert got["labels"] == [[0, NAME, O, NAME, NAME, O, 0], [0, O, PLACE, PLACE, PLACE, PLACE,
                                                             O, 0]]
    assert got["label_weights"] == [[0, 1, 1, 1, 0, 1, 0], [0, 1, 1, 0, 0, 0, 1, 0]]
    assert got["segment_ids"] == [[0] * 7, [0] * 8]
    assert (inputs.num_words, inputs.num_tagged) == (7, 7)


def test_weighted_positions_are_where_the_tag_signature_reads_labels():
    """For words the tokenizer keeps whole, the trained positions are the signature's
    first_pieces + 1 of the same words written as text."""
    tokenizer = WordPieceTokenizer(VOCAB, lowercase=False)
    sentences = [("Anna", "met", "Rosalind", "in", "the", "park", "."), ("Rosalind", "Anna")]
    inputs = tagging_inputs([TaggedExample(s, (O,) * len(s)) for s in sentences], tokenizer, 16)
    aligned = tokenize_words_with_offsets(tokenizer, [" ".join(s) for s in sentences])
    for weights, first_pieces in zip(columns(inputs)["label_weights"],
                                     aligned.first_pieces().to_list()):
        assert np.flatnonzero(weights).tolist() == [p + 1 for p in first_pieces]


def test_words_past_max_seq_length_are_cut_off_and_counted():
    tokenizer = WordPieceTokenizer(VOCAB, lowercase=False)
    example = TaggedExample(("Anna", "Rosalind", "met", "\u200b", "park"), (NAME, NAME, O, O, O))
    inputs = tagging_inputs([example], tokenizer, max_seq_length=5)
    got = columns(inputs)
    # [CLS] Anna Ros ##alind [SEP]: "met" and "park" are cut off; the zero-width
    # space has no piece at all.
    assert got["token_ids"] == [[2, 5, 6, 7, 3]]
    assert got["labels"] == [[0, NAME, NAME, NAME, 0]]
    assert got["label_weights"] == [[0, 1, 1, 0, 0]]
    assert (inputs.num_words, inputs.num_tagged) == (5, 2)


def test_batches_pad_labels_with_zero_weight_and_trim_to_the_bucket():
    tokenizer = WordPieceTokenizer(VOCAB, lowercase=False)
    examples = [TaggedExample(("Anna",), (NAME,)),
                TaggedExample(("the", "park") * 5, (O,) * 10)]
    inputs = tagging_inputs(examples, tokenizer, max_seq_length=32)
    batch = next(iter(packed_dataset(inputs.examples, pad_id=0, max_seq_length=32,
                                     batch_size=2, training=False)))
    batch = {k: v.numpy() for k, v in batch.items()}
    assert {k: v.shape for k, v in batch.items()} == {
        "token_ids": (2, 16), "segment_ids": (2, 16), "padding_mask": (2, 16),
        "labels": (2, 16), "label_weights": (2, 16)}  # 12 tokens, rounded up to 16
    assert batch["label_weights"].dtype == np.float32 and batch["labels"].dtype == np.int32
    assert batch["padding_mask"].sum(axis=1).tolist() == [3, 12]
    assert batch["label_weights"][0].tolist() == [0, 1] + [0] * 14
    assert not (batch["label_weights"] * (1 - batch["padding_mask"])).any()


def test_training_dataset_fn_shards_and_repeats():
    tokenizer = WordPieceTokenizer(VOCAB, lowercase=False)
    examples = [TaggedExample(("park",) * (i + 1), (i % 2,) * (i + 1)) for i in range(8)]
    inputs = tagging_inputs(examples, tokenizer, max_seq_length=12)
    dataset_fn = packed_dataset_fn(inputs.examples, pad_id=0, max_seq_length=12,
                                   global_batch_size=4, seed=1)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                         num_replicas_in_sync=2)
    batches = [{k: v.numpy() for k, v in b.items()} for b in dataset_fn(context).take(8)]
    # Pipeline 1 reads examples 1, 3, 5, 7: 2, 4, 6, 8 words, all labelled 1.
    words = np.concatenate([b["label_weights"].sum(axis=1) for b in batches])
    assert set(words.tolist()) == {2, 4, 6, 8}
    assert all(b["token_ids"].shape[0] == 2 for b in batches)
    assert all(set(b["labels"][b["label_weights"] > 0].tolist()) == {1} for b in batches)
