"""Question-answering files, their line-numbered errors, and answers located as token
positions of "[CLS] question [SEP] context [SEP]" the way the `answer` signature reads them."""
import json

import pytest

from kerasllm.data.qa_examples import (QAExample, QAExampleError, read_qa_examples,
                                       span_qa_inputs)
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from kerasllm.tokenizers.word_offsets import tokenize_words_with_offsets

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "who", "is", "the", "king", "?", "of",
         "de", "##n", "##mark", "anna", "cafe", ",", "bob"]


def write_rows(tmp_path, rows, name="a.jsonl"):
    path = tmp_path / name
    path.write_text("".join(row if isinstance(row, str) else json.dumps(row) + "\n"
                            for row in rows), encoding="utf-8")
    return str(path)


def test_answer_found_or_given_by_character_offset(tmp_path):
    path = write_rows(tmp_path, [
        {"question": "who?", "context": "anna is anna", "answer": "anna"},
        {"question": "who?", "context": "anna is anna", "answer": "anna", "answer_start": 8},
        {"question": "où?", "context": "Café Anna", "answer": "Anna"},
    ])
    assert read_qa_examples(path) == [
        QAExample("who?", "anna is anna", "anna", 0),  # the first occurrence
        QAExample("who?", "anna is anna", "anna", 8),
        QAExample("où?", "Café Anna", "Anna", 5),  # characters, not bytes
    ]


@pytest.mark.parametrize("rows, message", [
    ([{"question": "who?", "context": "anna", "answer": "bob"}],
     r"a.jsonl:1: the answer 'bob' is not in the context"),
    ([{"question": "who?", "context": "anna is bob", "answer": "bob", "answer_start": 2}],
     r"a.jsonl:1: answer_start 2 does not point at the answer 'bob'; the context has 'na ' "),
    ([{"question": "who?", "context": "anna", "answer": "anna", "answer_start": -1}],
     r"a.jsonl:1: answer_start -1 does not point"),
    ([{"question": "who?", "context": "anna", "answer": "anna", "answer_start": "0"}],
     r"a.jsonl:1: field 'answer_start' must be an integer, got str"),
    ([{"question": "who?", "context": "anna", "answer": " "}],
     r"a.jsonl:1: empty answer; a BertSpanQA always answers with a span"),
    ([{"question": " ", "context": "anna", "answer": "anna"}], r"a.jsonl:1: empty question"),
    ([{"question": "who?", "context": "", "answer": "anna"}], r"a.jsonl:1: empty context"),
    ([{"question": "who?", "context": "anna", "answer": "anna"}, {"question": "who?"}],
     r"a.jsonl:2: missing field\(s\) context, answer"),
    ([{"question": "who?", "context": "anna", "answer": 3}],
     r"a.jsonl:1: field 'answer' must be a string, got int"),
    ([{"question": "who?", "context": "anna", "answer": "anna"}, "\n"], r"a.jsonl:2: empty line"),
    (['{"question": "who?",\n'], r"a.jsonl:1: bad JSON"),
    ([], r"a.jsonl has no examples"),
])
def test_errors_name_file_and_line(tmp_path, rows, message):
    with pytest.raises(QAExampleError, match=message):
        read_qa_examples(write_rows(tmp_path, rows))


def test_only_jsonl_is_read(tmp_path):
    with pytest.raises(QAExampleError, match=r"unknown format '.tsv'; use one of .jsonl"):
        read_qa_examples(write_rows(tmp_path, [], name="a.tsv"))


def served_answer(tokenizer, example, token_ids, start, end):
    """The context bytes the `answer` signature would return for token positions
    start..end: from the start of the start piece's word to the end of the end
    piece's word (context piece k is token k + the segment-0 length)."""
    context_start = token_ids.index(tokenizer.sep_id) + 1
    piece_starts, piece_ends = (offsets.to_list()[0] for offsets in tokenize_words_with_offsets(
        tokenizer, [example.context]).piece_offsets())
    return example.context.encode()[piece_starts[start - context_start]:
                                    piece_ends[end - context_start]]


def test_answer_positions_map_back_to_the_answer_widened_to_whole_words():
    tokenizer = WordPieceTokenizer(VOCAB)
    examples = [QAExample("who is the king?", "The king is Anna.", "Anna", 12),
                QAExample("who?", "the king of Denmark", "Denmark", 12),
                QAExample("who?", "the king of Denmark", "enm", 13),  # inside a word
                QAExample("who?", "Café, the king is Bob", "Café, the", 0),  # bytes != chars
                QAExample("who?", "Café, the king is Bob", "king is Bob", 10)]
    inputs = span_qa_inputs(examples, tokenizer, max_seq_length=32)
    got = {name: value.to_list() if hasattr(value, "to_list") else value.numpy().tolist()
           for name, value in inputs.examples.columns.items()}
    assert inputs.fits.tolist() == [True] * 5
    # [CLS] who is the king ? [SEP] the king is anna . [SEP]
    assert got["token_ids"][0] == [2, 5, 6, 7, 8, 9, 3, 7, 8, 6, 14, 1, 3]
    assert got["segment_ids"][0] == [0] * 7 + [1] * 6
    assert (got["start_positions"][0], got["end_positions"][0]) == (10, 10)
    # [CLS] who ? [SEP] the king of de ##n ##mark [SEP]: Denmark is pieces 7..9.
    assert (got["start_positions"][1], got["end_positions"][1]) == (7, 9)
    assert (got["start_positions"][2], got["end_positions"][2]) == (7, 9)
    expected = [b"Anna", b"Denmark", b"Denmark", "Café, the".encode(), b"king is Bob"]
    for row, (example, answer) in enumerate(zip(examples, expected)):
        assert served_answer(tokenizer, example, got["token_ids"][row],
                             got["start_positions"][row], got["end_positions"][row]) == answer


def test_answers_trimmed_away_do_not_fit():
    tokenizer = WordPieceTokenizer(VOCAB)
    context = "the king " * 10 + "is bob"
    examples = [QAExample("who?", context, "bob", context.index("bob")),
                QAExample("who?", context, "the king", 0),
                QAExample("who?", context, "king is", context.index("king is"))]
    # 16 tokens: [CLS] who ? [SEP] and [SEP] leave 11 pieces of the context.
    inputs = span_qa_inputs(examples, tokenizer, max_seq_length=16)
    assert inputs.fits.tolist() == [False, True, False]
    kept = inputs.examples.where(inputs.fits)
    assert len(kept) == 1 and kept.columns["start_positions"].numpy().tolist() == [4]
