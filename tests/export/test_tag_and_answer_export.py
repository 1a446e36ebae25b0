"""Tagging and question-answering exports, run in a fresh process as TF Serving would."""
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from kerasllm.tokenizers.word_offsets import tokenize_words_with_offsets
from kerasllm.export.qa_signatures import qa_signatures
from kerasllm.export.saved_model import export_saved_model
from kerasllm.export.tagging_signatures import tagging_signatures
from kerasllm.models import BertEncoder, registry
from kerasllm.models.bert.span_qa import BertSpanQA
from kerasllm.models.bert.token_classifier import BertTokenClassifier
from tests.fresh_process import serve_in_fresh_process

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "king", "is", "who", "of",
         "de", "##n", "##mark", "e", "##cole", "anna", ",", "?", "."]
LABELS = ["O", "NAME"]
MAX_SEQ_LENGTH = 16
TEXTS = ["The king of Denmark is Anna.", "", "the king " * 500, "École,\u200b  Ünï\x00x?"]
QUESTIONS = ["who is the king?", "who?", "", "the king " * 500, "anna"]
CONTEXTS = ["The king of Denmark is Anna.", "", "École de Anna", "the king is anna",
            "anna " * 500]


def tiny_encoder():
    return BertEncoder(registry.get("bert_tiny").replace(
        vocab_size=len(VOCAB), max_sequence_length=64, dropout=0.0, attention_dropout=0.0))


def byte_slices(texts, starts, ends):
    return [[text.encode()[s:e] for s, e in zip(row_starts, row_ends)]
            for text, row_starts, row_ends in zip(texts, starts, ends)]


def test_word_offsets_slice_the_original_text():
    tokenizer = WordPieceTokenizer(VOCAB)
    aligned = tokenize_words_with_offsets(tokenizer, TEXTS)
    words = aligned.words.to_list()
    assert byte_slices(TEXTS, aligned.starts.to_list(), aligned.ends.to_list()) == words
    # Accents and case survive in the words although the pieces are cleaned; the
    # zero-width space alone is no word; NUL is deleted inside its word.
    assert words[3] == ["École".encode(), b",", "Ünï\x00x".encode(), b"?"]
    assert aligned.pieces.to_list()[3][0] == [13, 14]  # e ##cole
    assert aligned.piece_ids().to_list() == tokenizer.tokenize(TEXTS).to_list()
    first = aligned.first_pieces().to_list()[0]
    assert first == [0, 1, 2, 3, 6, 7, 8]  # "denmark" has 3 pieces


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    tokenizer = WordPieceTokenizer(VOCAB)
    model = BertTokenClassifier(tiny_encoder(), len(LABELS)).build_for_inputs()
    signatures = tagging_signatures(model, tokenizer, LABELS, MAX_SEQ_LENGTH)
    root = str(tmp_path_factory.mktemp("saved_models") / "tagger")
    # check=False: the tests below run the same checker, with their own inputs.
    return export_saved_model(root, signatures, [model, tokenizer], check=False), signatures


@pytest.fixture(scope="module")
def answerer(tmp_path_factory):
    tokenizer = WordPieceTokenizer(VOCAB)
    model = BertSpanQA(tiny_encoder(), max_answer_length=3).build_for_inputs()
    signatures = qa_signatures(model, tokenizer, MAX_SEQ_LENGTH)
    root = str(tmp_path_factory.mktemp("saved_models") / "answerer")
    # check=False: the tests below run the same checker, with their own inputs.
    return export_saved_model(root, signatures, [model, tokenizer], check=False), signatures


def test_served_tags_equal_in_process_tags(tagger, tmp_path):
    path, signatures = tagger
    served = serve_in_fresh_process(path, {"text": TEXTS}, tmp_path)
    local = {k: v.numpy() for k, v in signatures["tag"](tf.constant(TEXTS)).items()}
    for name in ["labels", "words", "start_offsets", "end_offsets"]:
        np.testing.assert_array_equal(served[f"tag/{name}"], local[name], err_msg=name)
    labels, words = local["labels"], local["words"]
    assert labels.shape == words.shape == (4, 1000) and local["start_offsets"].dtype == np.int64
    assert byte_slices(TEXTS, local["start_offsets"], local["end_offsets"]) == words.tolist()
    assert set(labels[0][:7]) <= {b"O", b"NAME"} and list(labels[0][7:]) == [b""] * 993
    assert list(labels[1]) == [b""] * 1000  # the empty text has no words
    # 16 tokens hold [CLS], 14 pieces and [SEP]: the words after them are not tagged.
    assert b"" not in labels[2][:14] and set(labels[2][14:]) == {b""}
    assert words[2][999] == b"king"


def test_served_answers_equal_in_process_answers(answerer, tmp_path):
    path, signatures = answerer
    served = serve_in_fresh_process(path, {"question": QUESTIONS, "context": CONTEXTS},
                                  tmp_path)
    local = {k: v.numpy() for k, v in signatures["answer"](
        tf.constant(QUESTIONS), tf.constant(CONTEXTS)).items()}
    for name in ["answer", "start_offset", "end_offset"]:
        np.testing.assert_array_equal(served[f"answer/{name}"], local[name], err_msg=name)
    np.testing.assert_allclose(served["answer/score"], local["score"], atol=1e-6)
    answers, starts, ends = local["answer"], local["start_offset"], local["end_offset"]
    assert [c.encode()[s:e] for c, s, e in zip(CONTEXTS, starts, ends)] == answers.tolist()
    assert answers[1] == b"" and local["score"][1] == 0  # no context, no answer
    for row in [0, 2, 3, 4]:
        assert answers[row] and answers[row] in CONTEXTS[row].encode()
        assert 0 < local["score"][row] <= 1
    # A span holds at most max_answer_length pieces, widened to whole words: so at most
    # that many words ("##mark is" becomes "Denmark is", four pieces but two words).
    words = tokenize_words_with_offsets(WordPieceTokenizer(VOCAB), answers).words
    assert max(words.row_lengths()) <= 3


def assert_same_outputs(longest, fixed):
    for name, value in longest.items():
        if value.dtype.is_floating:
            np.testing.assert_allclose(value, fixed[name], atol=1e-5, err_msg=name)
        else:
            np.testing.assert_array_equal(value, fixed[name], err_msg=name)


def test_tags_padded_to_the_longest_row_equal_fixed_shape_tags():
    tokenizer = WordPieceTokenizer(VOCAB)
    classifier = BertTokenClassifier(tiny_encoder(), len(LABELS)).build_for_inputs()
    longest, fixed = (tagging_signatures(classifier, tokenizer, LABELS, MAX_SEQ_LENGTH,
                                         pad_to_max_length=pad)["tag"] for pad in (False, True))
    # Short texts (the model sees 11 columns, not 16), then with a truncated one.
    for texts in (TEXTS[:2] + TEXTS[3:], TEXTS):
        assert_same_outputs(longest(tf.constant(texts)), fixed(tf.constant(texts)))


def test_answers_padded_to_the_longest_row_equal_fixed_shape_answers():
    tokenizer = WordPieceTokenizer(VOCAB)
    span_qa = BertSpanQA(tiny_encoder(), max_answer_length=3).build_for_inputs()
    longest, fixed = (qa_signatures(span_qa, tokenizer, MAX_SEQ_LENGTH,
                                    pad_to_max_length=pad)["answer"] for pad in (False, True))
    short = (["who?", "", "anna"], ["", "École de Anna", "the king is anna"])  # 8 columns
    for questions, contexts in (short, (QUESTIONS, CONTEXTS)):
        assert_same_outputs(longest(tf.constant(questions), tf.constant(contexts)),
                            fixed(tf.constant(questions), tf.constant(contexts)))
