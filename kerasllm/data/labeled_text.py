"""Labelled text for sequence classification: files -> examples -> tf.data batches.

File formats, chosen by extension (UTF-8):
  .tsv / .csv  a header row naming the columns `text`, `label` and optionally
               `text_b` (any order, no other columns), then one example per row;
               CSV follows Excel quoting, TSV is split on tabs with no quoting.
  .jsonl       one JSON object per line with string fields "text", "label"
               (an integer is read as its decimal string) and optionally "text_b".
`text_b`, when present, is the second segment of a sentence pair; an empty
`text_b` makes that row a single text. Every problem is a LabeledTextError
naming the file and line.
"""
import collections
import csv
import json
import os

import tensorflow as tf

from kerasllm.data.errors import DataError
from kerasllm.data.packing import pack_segments

TEXT, TEXT_B, LABEL = "text", "text_b", "label"
COLUMNS = (TEXT, TEXT_B, LABEL)
REQUIRED_COLUMNS = (TEXT, LABEL)
FORMATS = (".tsv", ".csv", ".jsonl")


class LabeledTextError(DataError):
    """A labelled-text file is unreadable or has a malformed line."""


LabeledExample = collections.namedtuple("LabeledExample", ["text", "label", "text_b"],
                                        defaults=[""])
LabeledExample.__doc__ = "One example: text, label id (int), optional second text."


def _error(path, line, message):
    return LabeledTextError(f"{path}:{line}: {message}")


def _tsv_rows(f):
    for number, line in enumerate(f, start=1):
        yield number, line.rstrip("\r\n").split("\t")


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
                     f"{TEXT_B!r}, each once; got {header}")
    for line, row in rows:
        if row == [] or row == [""]:
            raise _error(path, line, "empty line")
        if len(row) != len(header):
            raise _error(path, line, f"{len(row)} columns, but the header has {len(header)}")
        yield line, dict(zip(header, row))


def _jsonl_records(path, f):
    for line, text in enumerate(f, start=1):
        if not text.strip():
            raise _error(path, line, "empty line")
        try:
            record = json.loads(text)
        except json.JSONDecodeError as error:
            raise _error(path, line, f"bad JSON: {error.msg} at column {error.colno}") from None
        if not isinstance(record, dict):
            raise _error(path, line, f"expected a JSON object, got {type(record).__name__}")
        missing = [name for name in REQUIRED_COLUMNS if name not in record]
        if missing:
            raise _error(path, line, f"missing field(s) {', '.join(missing)}")
        if isinstance(record[LABEL], int) and not isinstance(record[LABEL], bool):
            record[LABEL] = str(record[LABEL])
        for name in COLUMNS:
            if name in record and not isinstance(record[name], str):
                raise _error(path, line, f"field {name!r} must be a string, got "
                             f"{type(record[name]).__name__}")
        yield line, record


def _records(path):
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise LabeledTextError(f"{path}: unknown format {extension!r}; use one of "
                               f"{', '.join(FORMATS)}")
    try:
        # newline="" lets the csv module see quoted line breaks and CRLF itself.
        with open(path, encoding="utf-8", newline="") as f:
            if extension == ".jsonl":
                yield from _jsonl_records(path, f)
            else:
                yield from _table_records(path, f, _tsv_rows if extension == ".tsv" else _csv_rows)
    except OSError as error:
        raise LabeledTextError(f"cannot read {path}: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise LabeledTextError(f"{path} is not UTF-8 text ({error.reason})") from None


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
        records.append((line, text, record.get(TEXT_B, ""), label))
    if not records:
        raise LabeledTextError(f"{path} has no examples")
    if label_names is None:
        label_names = sorted({label for _, _, _, label in records})
    label_names = tuple(label_names)
    label_ids = {name: i for i, name in enumerate(label_names)}
    examples = []
    for line, text, text_b, label in records:
        if label not in label_ids:
            raise _error(path, line, f"unknown label {label!r}; known labels: "
                         f"{', '.join(label_names)}")
        examples.append(LabeledExample(text, label_ids[label], text_b))
    return examples, label_names


LENGTH_BUCKET_WIDTH = 8  # tokens; also the granularity of a batch's trimmed length


def _examples_dataset(examples, lengths):
    """Columns as tensors: ({"text", "text_b": string [n]}, labels int32 [n], lengths int64 [n])."""
    return tf.data.Dataset.from_tensor_slices((
        {TEXT: [e.text for e in examples], TEXT_B: [e.text_b for e in examples]},
        tf.constant([e.label for e in examples], tf.int32),
        tf.constant(lengths, tf.int64)))


def _token_counts(examples, tokenizer, has_pairs):
    """Wordpieces per example, special tokens included (before truncation)."""
    counts = tokenizer.tokenize([e.text for e in examples]).row_lengths() + 2
    if has_pairs:
        counts += tokenizer.tokenize([e.text_b for e in examples]).row_lengths() + 1
    return counts.numpy()


def trim_padding(inputs):
    """Drops the padding columns no example of the batch uses, keeping the length a
    multiple of LENGTH_BUCKET_WIDTH (few distinct shapes for compiled steps).

    inputs: dict with token_ids, segment_ids, padding_mask int32 [B, S] (+ anything
    else, e.g. labels [B], passed through). Returns the same with [B, S'] , S' <= S.
    """
    longest = tf.reduce_max(tf.reduce_sum(inputs["padding_mask"], axis=1))
    width = LENGTH_BUCKET_WIDTH
    length = tf.minimum((longest + width - 1) // width * width,
                        tf.shape(inputs["padding_mask"])[1])
    return {name: value[:, :length] if name in ("token_ids", "segment_ids", "padding_mask")
            else value for name, value in inputs.items()}


def classification_dataset(examples, tokenizer, *, max_seq_length, batch_size, training,
                           seed=None):
    """tf.data batches of tokenized, packed examples for a BertClassifier.

    Texts are tokenized in the pipeline with the same graph ops the exported
    signatures use. Pairs are packed "[CLS] a [SEP] b [SEP]" when any example
    has a `text_b`, else "[CLS] a [SEP]". A batch is as long as its longest
    example (rounded up to a multiple of LENGTH_BUCKET_WIDTH, at most
    max_seq_length): padding only costs compute, the model ignores it.

    Args:
      examples: list of LabeledExample.
      tokenizer: WordPieceTokenizer.
      max_seq_length: S; longer input is truncated (see pack_segments).
      batch_size: B.
      training: True: shuffled anew every epoch, repeated forever, full batches
        only, each drawn from examples of similar length (buckets
        LENGTH_BUCKET_WIDTH tokens wide), which makes a batch of short
        sentences about as cheap as its real tokens; False: one pass in order,
        last batch possibly smaller.
      seed: shuffle seed (training only).
    Returns:
      tf.data.Dataset of dicts: token_ids, segment_ids, padding_mask int32 [B, S'],
      S' <= S, and labels int32 [B].
    """
    if not examples:
        raise DataError("no examples to batch")
    if training and len(examples) < batch_size:
        raise DataError(f"{len(examples)} training examples cannot fill one batch of "
                        f"{batch_size}; use a smaller batch size")
    has_pairs = any(e.text_b for e in examples)

    def tokenize_and_pack(texts, labels, lengths):
        del lengths
        segments = [tokenizer.tokenize(texts[TEXT])]
        if has_pairs:
            segments.append(tokenizer.tokenize(texts[TEXT_B]))
        inputs = pack_segments(segments, max_seq_length, tokenizer.cls_id, tokenizer.sep_id,
                               tokenizer.pad_id)
        return trim_padding(dict(inputs, labels=labels))

    if training:
        lengths = _token_counts(examples, tokenizer, has_pairs)
        dataset = _examples_dataset(examples, lengths)
        dataset = dataset.shuffle(len(examples), seed=seed, reshuffle_each_iteration=True)
        dataset = dataset.repeat().group_by_window(
            key_func=lambda texts, label, length: tf.minimum(
                length, max_seq_length) // LENGTH_BUCKET_WIDTH,
            reduce_func=lambda key, window: window.batch(batch_size, drop_remainder=True),
            window_size=batch_size)
    else:
        dataset = _examples_dataset(examples, [0] * len(examples))
        dataset = dataset.batch(batch_size)
    return dataset.map(tokenize_and_pack, num_parallel_calls=tf.data.AUTOTUNE) \
        .prefetch(tf.data.AUTOTUNE)


def classification_dataset_fn(examples, tokenizer, *, max_seq_length, global_batch_size,
                              seed=None):
    """A training dataset_fn for kerasllm.training.loop.train.

    Each input pipeline reads every num_input_pipelines-th example (disjoint
    shards), shuffles with its own seed and batches
    input_context.get_per_replica_batch_size(global_batch_size) examples.

    Returns:
      Callable[[tf.distribute.InputContext], tf.data.Dataset] (see
      classification_dataset with training=True).
    """
    def dataset_fn(input_context):
        shard = examples[input_context.input_pipeline_id::input_context.num_input_pipelines]
        return classification_dataset(
            shard, tokenizer, max_seq_length=max_seq_length,
            batch_size=input_context.get_per_replica_batch_size(global_batch_size),
            training=True,
            seed=None if seed is None else seed + input_context.input_pipeline_id)

    return dataset_fn
