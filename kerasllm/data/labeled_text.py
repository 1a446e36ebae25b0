"""Labelled text for sequence classification: files -> examples -> tf.data batches.

File formats, chosen by extension (UTF-8):
  .tsv / .csv  a header row naming the columns `text`, `label` and optionally
               `text_b` and `confidence` (any order, no other columns), then one
               example per row; CSV follows Excel quoting, TSV is split on tabs
               with no quoting.
  .jsonl       one JSON object per line with string fields "text", "label"
               (an integer is read as its decimal string) and optionally
               "text_b" and a number "confidence".
`text_b`, when present, is the second segment of a sentence pair; an empty
`text_b` makes that row a single text. `confidence`, when present, is how
sure the label is (for example the share of annotators who chose it): the
probability training gives the label, the rest spread evenly over the other
labels; at least 1 / (number of labels), at most 1; an empty cell or a missing
field is 1. Every problem is a LabeledTextError naming the file and line.
"""
import collections
import csv
import functools

import tensorflow as tf

from kerasllm.data.batching import (LENGTH_MULTIPLE_COMPILED, bucketed_batches,
                                    sharded_dataset_fn, trim_padding)
from kerasllm.data.example_files import (NUMBER, STRING, ExampleFileError, check_fields,
                                         file_format, jsonl_objects, label_lookup, line_error,
                                         numbered_lines, read_records)

TEXT, TEXT_B, LABEL, CONFIDENCE = "text", "text_b", "label", "confidence"
COLUMNS = (TEXT, TEXT_B, LABEL, CONFIDENCE)
REQUIRED_COLUMNS = (TEXT, LABEL)
FORMATS = (".tsv", ".csv", ".jsonl")


class LabeledTextError(ExampleFileError):
    """A labelled-text file is unreadable or has a malformed line."""


LabeledExample = collections.namedtuple("LabeledExample",
                                        ["text", "label", "text_b", "confidence",
                                         "teacher_logits"],
                                        defaults=["", 1.0, None])
LabeledExample.__doc__ = ("One example: text, label id (int), optional second text, the "
                          "label's confidence (float, 1 = certain), and for distillation a "
                          "teacher's scores of it (float [num_labels]) or None.")


def _error(path, line, message):
    return line_error(LabeledTextError, path, line, message)


def _tsv_rows(f):
    for number, line in numbered_lines(f):
        yield number, line.split("\t")


def _csv_rows(f):
    reader = csv.reader(f)
    for row in reader:
        # A quoted field may span lines; line_num is where the record ends.
        yield reader.line_num, row


def _table_records(path, f, rows):
    """(line, {column: value}) per data row of a TSV/CSV file with a header."""
    rows = rows(f)
    header_line, header = next(rows, (1, []))
    header = [name.strip() for name in header]
    unknown = [name for name in header if name not in COLUMNS]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if unknown or missing or len(set(header)) != len(header):
        raise _error(path, header_line,
                     f"the header must name the columns {TEXT!r}, {LABEL!r} and optionally "
                     f"{TEXT_B!r} and {CONFIDENCE!r}, each once; got {header}")
    for line, row in rows:
        if row == [] or row == [""]:
            raise _error(path, line, "empty line")
        if len(row) != len(header):
            raise _error(path, line, f"{len(row)} columns, but the header has {len(header)}")
        yield line, dict(zip(header, row))


def _jsonl_records(path, f):
    for line, record in jsonl_objects(path, f, LabeledTextError):
        label = record.get(LABEL)
        if isinstance(label, int) and not isinstance(label, bool):
            record[LABEL] = str(label)
        check_fields(path, line, record, LabeledTextError,
                     required={TEXT: STRING, LABEL: STRING},
                     optional={TEXT_B: STRING, CONFIDENCE: NUMBER})
        yield line, record


def _records(path):
    extension = file_format(path, FORMATS, LabeledTextError)

    def parse(f):
        if extension == ".jsonl":
            return _jsonl_records(path, f)
        return _table_records(path, f, _tsv_rows if extension == ".tsv" else _csv_rows)

    return read_records(path, parse, LabeledTextError)


def read_labeled_text(path, label_names=None):
    """Reads one labelled-text file (format in the module docstring).

    Args:
      path: a .tsv, .csv or .jsonl file.
      label_names: the label set, in class-id order; a label outside it is an
        error. None: the sorted set of labels in the file.
    Returns:
      (examples, label_names): a list of LabeledExample whose `label` is the
      index into the tuple `label_names`.
    Raises:
      LabeledTextError: unreadable file, bad header, wrong column count, bad
        JSON, empty line or empty text, unknown label, or no examples.
    """
    records = []
    for line, record in _records(path):
        text, label = record[TEXT], record[LABEL].strip()
        if not text.strip():
            raise _error(path, line, "empty text")
        if not label:
            raise _error(path, line, "empty label")
        records.append((line, text, record.get(TEXT_B, ""), label,
                        _confidence(path, line, record.get(CONFIDENCE, ""))))
    if not records:
        raise LabeledTextError(f"{path} has no examples")
    if label_names is None:
        label_names = sorted({label for _, _, _, label, _ in records})
    label_names = tuple(label_names)
    label_id = label_lookup(path, label_names, LabeledTextError)
    least_confidence = 1 / len(label_names)
    for line, _, _, _, confidence in records:
        if confidence < least_confidence:
            raise _error(path, line, f"confidence {confidence} is below 1/{len(label_names)} "
                                     "(the number of labels): another label would be likelier "
                                     "than the one given")
    return [LabeledExample(text, label_id(line, label), text_b, confidence)
            for line, text, text_b, label, confidence in records], label_names


def _confidence(path, line, value):
    """A `confidence` cell or field as a float in (0, 1]; empty = 1."""
    if isinstance(value, str):
        if not value.strip():
            return 1.0
        try:
            value = float(value)
        except ValueError:
            raise _error(path, line, f"confidence {value!r} is not a number") from None
    if not 0 < value <= 1:
        raise _error(path, line, f"confidence {value} is not in (0, 1]")
    return float(value)


def _token_counts(examples, tokenizer, has_pairs):
    """Wordpieces per example, special tokens included (before truncation)."""
    counts = tokenizer.tokenize([e.text for e in examples]).row_lengths() + 2
    if has_pairs:
        counts += tokenizer.tokenize([e.text_b for e in examples]).row_lengths() + 1
    return counts.numpy()


def classification_dataset(examples, tokenizer, *, max_seq_length, batch_size, training,
                           seed=None, length_multiple=LENGTH_MULTIPLE_COMPILED, start_batch=0):
    """tf.data batches of tokenized, packed examples for a BertClassifier.

    Texts are tokenized in the pipeline with the same graph ops the exported
    signatures use. Pairs are packed "[CLS] a [SEP] b [SEP]" when any example
    has a `text_b`, else "[CLS] a [SEP]". A batch is as long as its longest
    example (rounded up to a multiple of `length_multiple`, at most
    max_seq_length): padding only costs compute, the model ignores it.

    Args:
      examples: list of LabeledExample.
      tokenizer: WordPieceTokenizer.
      max_seq_length: S; longer input is truncated (see pack_segments).
      batch_size: B.
      training: True: endless epochs of full batches, shuffled anew each epoch,
        each drawn from examples of similar length (buckets `length_multiple`
        tokens wide), which makes a batch of short sentences about as cheap as
        its real tokens; batch k is a function of (seed, k). False: one pass,
        shortest examples first, last batch possibly smaller. See
        kerasllm.data.batching.bucketed_batches.
      seed: training only; None acts as 0.
      length_multiple: see kerasllm.data.batching.trim_padding.
      start_batch: training only: the first batch to give.
    Returns:
      tf.data.Dataset of dicts: token_ids, segment_ids, padding_mask int32 [B, S'],
      S' <= S, and labels int32 [B]; in training, when some example's label is
      less than certain, also label_confidence float32 [B]; when the examples
      carry teacher_logits, those as float32 [B, num_labels].
    """
    has_pairs = any(e.text_b for e in examples)

    def tokenize_and_pack(columns):
        segments = [tokenizer.tokenize(columns[TEXT])]
        if has_pairs:
            segments.append(tokenizer.tokenize(columns[TEXT_B]))
        inputs = tokenizer.pack(segments, max_seq_length)
        targets = {name: value for name, value in columns.items()
                   if name not in (TEXT, TEXT_B)}
        return trim_padding(dict(inputs, **targets), length_multiple=length_multiple)

    columns = {TEXT: [e.text for e in examples], TEXT_B: [e.text_b for e in examples],
               "labels": tf.constant([e.label for e in examples], tf.int32)}
    if training and any(e.confidence < 1 for e in examples):
        columns["label_confidence"] = tf.constant([e.confidence for e in examples],
                                                  tf.float32)
    if examples and examples[0].teacher_logits is not None:
        columns["teacher_logits"] = tf.constant([e.teacher_logits for e in examples],
                                                tf.float32)
    lengths = _token_counts(examples, tokenizer, has_pairs) if examples else []
    return bucketed_batches(columns, lengths, tokenize_and_pack, batch_size=batch_size,
                            max_seq_length=max_seq_length, training=training, seed=seed,
                            bucket_width=length_multiple, start_batch=start_batch)


def classification_dataset_fn(examples, tokenizer, *, max_seq_length, global_batch_size,
                              seed=None, length_multiple=LENGTH_MULTIPLE_COMPILED):
    """A training dataset_fn for kerasllm.training.loop.train (see sharded_dataset_fn).

    Returns:
      Callable[[tf.distribute.InputContext, int], tf.data.Dataset]: the
      pipeline's batches from `start_batch` on (see classification_dataset with
      training=True).
    """
    return sharded_dataset_fn(
        examples, functools.partial(classification_dataset, tokenizer=tokenizer,
                                    max_seq_length=max_seq_length, training=True,
                                    length_multiple=length_multiple),
        global_batch_size=global_batch_size, seed=seed)
