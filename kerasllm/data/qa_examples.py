"""Questions answered by a span of a context (extractive QA, as in SQuAD): files ->
examples -> packed inputs for a BertSpanQA.

File format (UTF-8):
  .jsonl   one example per line with string fields "question", "context" and
           "answer" (text that occurs in the context), and optionally
           "answer_start", the answer's character offset in the context (needed
           when the answer occurs more than once; default: its first occurrence).
The answer must not be empty: BertSpanQA always answers with a span of the
context, so it cannot learn "no answer" (SQuAD 2.0's unanswerable questions).
Every problem is a QAExampleError naming the file and line.

Positions. The input is packed as the `answer` signature packs it: "[CLS]
question [SEP] context [SEP]", trimmed round-robin to max_seq_length. The answer
starts at the first piece of the first context word it overlaps and ends at the
last piece of the last one; the signature maps a span back to the byte offsets
of those words, so it would serve the gold span as the answer widened to whole
words. An answer that lies (partly) beyond the trimmed context cannot be
trained on: span_qa_inputs marks it in `fits`.
"""
import collections

import numpy as np
import tensorflow as tf

from kerasllm.data.batching import PackedExamples
from kerasllm.data.example_files import (INTEGER, STRING, ExampleFileError, check_fields,
                                         file_format, jsonl_objects, line_error, read_records)
from kerasllm.tokenizers.word_offsets import tokenize_words_with_offsets

QUESTION, CONTEXT, ANSWER, ANSWER_START = "question", "context", "answer", "answer_start"
FORMATS = (".jsonl",)


class QAExampleError(ExampleFileError):
    """A question-answering file is unreadable or has a malformed line."""


QAExample = collections.namedtuple("QAExample",
                                   ["question", "context", "answer", "answer_start"])
QAExample.__doc__ = ("One example: question, context, answer (str), answer_start (int), the "
                     "answer's character offset in the context.")


def _error(path, line, message):
    return line_error(QAExampleError, path, line, message)


def _answer_start(path, line, record):
    """The character offset of the answer in the context, checked against the text."""
    context, answer = record[CONTEXT], record[ANSWER]
    if ANSWER_START not in record:
        start = context.find(answer)
        if start < 0:
            raise _error(path, line, f"the answer {answer!r} is not in the context")
        return start
    start = record[ANSWER_START]
    found = context[start:start + len(answer)] if start >= 0 else ""
    if found != answer:
        raise _error(path, line, f"answer_start {start} does not point at the answer "
                     f"{answer!r}; the context has {found!r} there")
    return start


def read_qa_examples(path):
    """Reads one question-answering file (format in the module docstring).

    Returns:
      A list of QAExample.
    Raises:
      QAExampleError: unreadable file, not .jsonl, bad JSON, empty line, a
        missing or mistyped field, an empty question, context or answer, an
        answer not in the context (or not at answer_start), or no examples.
    """
    file_format(path, FORMATS, QAExampleError)

    def parse(f):
        for line, record in jsonl_objects(path, f, QAExampleError):
            check_fields(path, line, record, QAExampleError,
                         required={QUESTION: STRING, CONTEXT: STRING, ANSWER: STRING},
                         optional={ANSWER_START: INTEGER})
            for name in (QUESTION, CONTEXT):
                if not record[name].strip():
                    raise _error(path, line, f"empty {name}")
            if not record[ANSWER].strip():
                raise _error(path, line, "empty answer; a BertSpanQA always answers with a "
                             "span of the context, so examples without an answer cannot "
                             "be used")
            yield QAExample(record[QUESTION], record[CONTEXT], record[ANSWER],
                            _answer_start(path, line, record))

    examples = list(read_records(path, parse, QAExampleError))
    if not examples:
        raise QAExampleError(f"{path} has no examples")
    return examples


def _answer_bytes(example):
    """(start, end) byte offsets of the answer in the UTF-8 context."""
    start = len(example.context[:example.answer_start].encode("utf-8"))
    return start, start + len(example.answer.encode("utf-8"))


SpanQAInputs = collections.namedtuple("SpanQAInputs", ["examples", "fits"])
SpanQAInputs.__doc__ = """span_qa_inputs' result: `examples` PackedExamples, one row per
example; `fits` bool np.ndarray [n], False where the answer does not lie wholly
within the packed context (those rows' positions are meaningless)."""


def span_qa_inputs(examples, tokenizer, max_seq_length):
    """Tokenizes and packs "[CLS] question [SEP] context [SEP]" and locates the answers.

    Args:
      examples: non-empty list of QAExample.
      tokenizer: WordPieceTokenizer.
      max_seq_length: S; longer input is trimmed round-robin (see join_segments).
    Returns:
      SpanQAInputs whose examples have columns token_ids, segment_ids int32
      [n, (L)], L <= S, and start_positions, end_positions int32 [n], the token
      indices of the answer's first and last piece.
    """
    aligned = tokenize_words_with_offsets(tokenizer, [e.context for e in examples])
    token_ids, segment_ids = tokenizer.join(
        [tokenizer.tokenize([e.question for e in examples]), aligned.piece_ids()],
        max_seq_length)
    # "[CLS] question [SEP]" are the segment-0 tokens; context piece k follows them.
    context_start = tf.reduce_sum(tf.cast(segment_ids == 0, tf.int32), axis=1)
    kept_pieces = tf.cast(token_ids.row_lengths(), tf.int32) - context_start - 1  # - [SEP]
    answer_starts, answer_ends = (tf.constant(offsets, tf.int64)[:, None]
                                  for offsets in zip(*map(_answer_bytes, examples)))
    piece_starts, piece_ends = aligned.piece_offsets()
    # Pieces are in text order, so counting the pieces whose word ends before the
    # answer finds the first overlapping one, and likewise for the last.
    first = tf.reduce_sum(tf.cast(piece_ends <= answer_starts, tf.int32), axis=1)
    last = tf.reduce_sum(tf.cast(piece_starts < answer_ends, tf.int32), axis=1) - 1
    fits = (first <= last) & (last < kept_pieces)
    packed = PackedExamples({"token_ids": token_ids, "segment_ids": segment_ids,
                             "start_positions": context_start + first,
                             "end_positions": context_start + last})
    return SpanQAInputs(packed, np.asarray(fits))
