"""Parallel text (source sentence -> its translation) for sequence-to-sequence training.

    two aligned files, or a TSV    read_parallel_files / read_parallel_tsv
      -> (sources, targets)        lists of str, pair i = line i
      -> parallel_dataset          tokenized once; "x </s>" and "<s> y </s>",
                                   truncated, grouped by length into buckets
                                   and padded to the bucket's widths
A shared (joint) vocabulary for both languages is trained with the existing
trainer on both sides' text:
    kerasllm.tokenizers.sentencepiece.train_sentencepiece(lines=sources + targets, ...)

Batches come in a handful of shapes only (one per length bucket, see
bucket_widths), each a multiple of 8 wide unless capped by the maximum length, so
a tf.function or XLA-compiled step traces once per bucket, not once per batch.
Training batch k is a pure function of (seed, k) (kerasllm.data.batching), so a
resumed run starts at any batch without reading the ones before it.
"""
import functools
import math

import tensorflow as tf

from kerasllm.data.batching import PackedExamples, sharded_dataset_fn, shuffled_batches
from kerasllm.errors import DataError

__all__ = ["EmptySideError", "ParallelTextError", "ParallelLineCountError", "bucket_widths",
           "parallel_dataset", "parallel_dataset_fn", "read_parallel_files",
           "read_parallel_tsv"]

_WIDTH_MULTIPLE = 8
SIDES = ("source", "target")


class ParallelTextError(DataError):
    """A parallel text file is missing, not UTF-8, malformed or has no pairs."""


class ParallelLineCountError(ParallelTextError):
    """The source and target files of a parallel corpus have different line counts."""


class EmptySideError(ParallelTextError):
    """Every sentence of one side of a parallel corpus is empty: nothing to learn."""


def _read_lines(path, strip):
    """The lines of the UTF-8 file at `path` (split at "\\n" only: U+2028 and the like
    inside a sentence do not split it; "\\r" endings and a leading BOM dropped)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as error:
        raise ParallelTextError(f"Parallel text file {path!r} does not exist.") from error
    except OSError as error:
        raise ParallelTextError(f"Cannot read parallel text file {path!r}: {error}.") from error
    raw_lines = data.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()  # the newline that ends the last line
    lines = []
    for number, raw in enumerate(raw_lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ParallelTextError(
                f"{path}: line {number} is not UTF-8 ({error.reason} at byte {error.start} "
                "of the line); convert the file to UTF-8.") from error
        if number == 1:
            line = line.removeprefix("\ufeff")
        line = line.removesuffix("\r")
        lines.append(line.strip() if strip else line)
    return lines


def _first_differing_line(sources, targets):
    """1-based number of the first line blank in one file but not in the other, or
    else the first line past the end of the shorter file."""
    for index, (source, target) in enumerate(zip(sources, targets)):
        if bool(source) != bool(target):
            return index + 1
    return min(len(sources), len(targets)) + 1


def _pairs(sources, targets, where, source_side, target_side):
    """The pairs not blank on both sides; `where` names the corpus and the sides
    name the file or column each side came from."""
    pairs = [(source, target) for source, target in zip(sources, targets) if source or target]
    if not pairs:
        raise ParallelTextError(f"{where} has no sentence pairs.")
    sources, targets = [source for source, _ in pairs], [target for _, target in pairs]
    for side, sentences, role in ((source_side, sources, "source"),
                                  (target_side, targets, "target")):
        if not any(sentences):
            raise EmptySideError(
                f"{side} has only empty lines: every one of the {len(pairs)} pairs has an "
                f"empty {role} sentence, so there is nothing to learn; check that it is "
                "the right file and not truncated.")
    return sources, targets


def read_parallel_files(source_path, target_path):
    """Sentence pairs from two aligned UTF-8 text files, one sentence per line:
    line i of the target file translates line i of the source file.

    Each line is stripped of surrounding whitespace. Lines blank in both files
    are skipped (paragraph breaks); a line blank in only one file is kept as an
    empty sentence, so the pairs stay aligned.

    Returns:
      (sources, targets): two lists of str of equal length.

    Raises:
      ParallelTextError: a file is missing or unreadable, a line is not UTF-8
        (the message names the file and line), or there are no pairs.
      EmptySideError: every line of one file is empty (naming the file).
      ParallelLineCountError: the files have different numbers of lines; the
        message gives both counts and the first line where they differ (the
        first line blank in one file only, else the first past the shorter file).
    """
    sources = _read_lines(source_path, strip=True)
    targets = _read_lines(target_path, strip=True)
    if len(sources) != len(targets):
        line = _first_differing_line(sources, targets)
        if line <= min(len(sources), len(targets)):
            blank, full = ((source_path, target_path) if not sources[line - 1]
                           else (target_path, source_path))
            detail = f"it is blank in {blank} but not in {full}"
        else:
            shorter, longer = ((source_path, target_path) if len(sources) < len(targets)
                               else (target_path, source_path))
            detail = f"it is in {longer} but past the end of {shorter}"
        raise ParallelLineCountError(
            f"{source_path} has {len(sources)} lines but {target_path} has {len(targets)}; "
            f"parallel files must pair line by line. The first line that differs is line "
            f"{line}: {detail}.")
    return _pairs(sources, targets, f"{source_path} / {target_path}", source_path, target_path)


def read_parallel_tsv(path, source_column="source", target_column="target"):
    """Sentence pairs from a UTF-8 tab-separated file with a header row naming its
    columns; `source_column` and `target_column` are used, any others ignored.

    Fields are taken literally (no CSV quoting, so a field cannot hold a tab or a
    newline) and stripped of surrounding whitespace. Blank lines, and rows whose
    source and target are both empty, are skipped.

    Returns:
      (sources, targets): two lists of str of equal length.

    Raises:
      ParallelTextError: the file is missing, unreadable or not UTF-8, the header
        lacks a column or repeats one, a row has a different number of fields
        than the header (the message names the line), or there are no pairs.
      EmptySideError: every field of the source or target column is empty.
    """
    lines = _read_lines(path, strip=False)
    if not lines:
        raise ParallelTextError(f"{path} is empty; it needs a header row naming the "
                                f"{source_column!r} and {target_column!r} columns.")
    header = [name.strip() for name in lines[0].split("\t")]
    columns = []
    for column in (source_column, target_column):
        if header.count(column) != 1:
            problem = "has no" if column not in header else "repeats the"
            raise ParallelTextError(
                f"{path}: the header row {problem} {column!r} column (its columns: "
                f"{', '.join(repr(name) for name in header)}); a parallel TSV needs one "
                f"{source_column!r} and one {target_column!r} column, tab-separated.")
        columns.append(header.index(column))
    sources, targets = [], []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise ParallelTextError(
                f"{path}: line {number} has {len(fields)} tab-separated fields but the header "
                f"has {len(header)}.")
        sources.append(fields[columns[0]].strip())
        targets.append(fields[columns[1]].strip())
    return _pairs(sources, targets, path, f"the {source_column!r} column of {path}",
                  f"the {target_column!r} column of {path}")


def bucket_widths(max_source_length, max_target_length, num_buckets=8):
    """The (source width, target width) of each length bucket, narrowest first.

    Bucket k of num_buckets covers lengths up to k/num_buckets of the maxima,
    rounded up to a multiple of 8 (capped at the maxima); buckets that come out
    equal are merged, and the last is always (max_source_length, max_target_length).

    Returns:
      list of (int, int), both non-decreasing.
    """
    widths = []
    for bucket in range(1, num_buckets + 1):
        width = tuple(min(limit, _WIDTH_MULTIPLE * math.ceil(limit * bucket / num_buckets
                                                             / _WIDTH_MULTIPLE))
                      for limit in (max_source_length, max_target_length))
        if not widths or width != widths[-1]:
            widths.append(width)
    return widths


def _token_ids(texts, tokenizer, chunk_size=1024):
    """list of str [n] -> int32 RaggedTensor [n, (tokens)], computed eagerly (a
    tf.data map under a distribution strategy cannot reach the tokenizer's op
    resources)."""
    return tf.concat([tf.cast(tokenizer.tokenize(tf.constant(texts[start:start + chunk_size],
                                                             tf.string)), tf.int32)
                      for start in range(0, len(texts), chunk_size)], axis=0)


def _check_settings(sources, targets, max_source_length, max_target_length, batch_size,
                    num_buckets):
    if len(sources) != len(targets):
        raise DataError(f"{len(sources)} sources but {len(targets)} targets; they must pair "
                        "one to one.")
    if not sources:
        raise DataError("no sentence pairs to make a dataset of.")
    if max_source_length < 2 or max_target_length < 3:
        raise DataError(
            f"max_source_length={max_source_length} / max_target_length={max_target_length} "
            "leave no room for a token: a source needs at least 2 (a token and </s>), a "
            "target at least 3 (<s>, a token and </s>).")
    if batch_size < 1 or num_buckets < 1:
        raise DataError(f"batch_size ({batch_size}) and num_buckets ({num_buckets}) must be "
                        "at least 1.")


def parallel_dataset(sources, targets, tokenizer, *, max_source_length, max_target_length,
                     batch_size, training, seed=None, bos_id, eos_id, num_buckets=8,
                     start_batch=0):
    """tf.data batches of tokenized sentence pairs for an encoder-decoder model.

    Each pair becomes
      source: x_1 .. x_n </s>            (the encoder reads the whole sentence, and
                                          </s> marks its end)
      target: <s> y_1 .. y_m </s>        (the model feeds target_ids[:, :-1] to the
                                          decoder and predicts target_ids[:, 1:])
    A sentence too long for its limit loses tokens from its end; </s> (and <s>)
    always stay. An empty sentence gives "</s>" / "<s> </s>".

    Pairs are grouped into length buckets (see bucket_widths; a pair goes to the
    narrowest bucket that holds both its sides) and every batch is padded with the
    tokenizer's pad id to the widths of the narrowest bucket that holds it, so
    short pairs get narrow batches and there are at most `num_buckets` batch
    shapes (plus the last, smaller batch when not training).

    Args:
      sources, targets: lists of str of equal length (e.g. read_parallel_files).
      tokenizer: a kerasllm.tokenizers.Tokenizer (e.g. a SentencePieceTokenizer
        trained on both sides); tokenized once, on the host.
      max_source_length: S, the widest source batch (tokens, </s> included).
      max_target_length: T, the widest target batch (<s> and </s> included).
      batch_size: B, pairs per batch.
      training: True: endless epochs of n // B full batches, each drawn from one
        bucket (but the few that straddle two), batch k a pure function of (seed,
        k) (see kerasllm.data.batching). False: one pass in the given order,
        consecutive pairs batched together; the last batch may be smaller.
      seed: training only; None acts as 0.
      bos_id, eos_id: the <s> and </s> ids (the tokenizer's bos_id / eos_id).
      num_buckets: number of length buckets.
      start_batch: training only: the first batch to give, at no cost (the
        batches before it are not computed): a resumed run's position.

    Returns:
      tf.data.Dataset of {"source_ids": int32 [B, S'], "source_padding_mask": int32
      [B, S'], "target_ids": int32 [B, T'], "target_padding_mask": int32 [B, T']}
      with (S', T') one of bucket_widths(S, T, num_buckets); masks are 1 on real
      tokens (</s> and <s> included), 0 on padding.

    Raises:
      DataError: no pairs, unequal numbers of sources and targets, limits too
        small for a token, or (training) fewer pairs than a batch.
    """
    _check_settings(sources, targets, max_source_length, max_target_length, batch_size,
                    num_buckets)
    return _batches(_framed_pairs(sources, targets, tokenizer, max_source_length,
                                  max_target_length, bos_id, eos_id),
                    pad_id=tokenizer.pad_id, max_source_length=max_source_length,
                    max_target_length=max_target_length, batch_size=batch_size,
                    training=training, seed=seed, num_buckets=num_buckets,
                    start_batch=start_batch)


def _framed_pairs(sources, targets, tokenizer, max_source_length, max_target_length,
                  bos_id, eos_id):
    """PackedExamples of source_ids, target_ids (see framed_pair_ids)."""
    source_tokens, target_tokens = (_token_ids(list(texts), tokenizer)
                                    for texts in (sources, targets))
    return PackedExamples(framed_pair_ids(source_tokens, target_tokens, max_source_length,
                                          max_target_length, bos_id, eos_id))


def framed_pair_ids(source_tokens, target_tokens, max_source_length, max_target_length,
                    bos_id, eos_id):
    """{"source_ids", "target_ids"}: int32 ragged [n, (tokens)], "x </s>" and
    "<s> y </s>" of the tokenized pairs, cut to the limits (end tokens included)."""
    rows = source_tokens.nrows()

    def column(token_id):
        return tf.RaggedTensor.from_tensor(tf.fill([rows, 1], tf.cast(token_id, tf.int32)))

    source_tokens, target_tokens = (tf.cast(t, tf.int32) for t in (source_tokens,
                                                                   target_tokens))
    return {"source_ids": tf.concat([source_tokens[:, :max_source_length - 1],
                                     column(eos_id)], axis=1),
            "target_ids": tf.concat([column(bos_id), target_tokens[:, :max_target_length - 2],
                                     column(eos_id)], axis=1)}


def _batches(pairs, *, pad_id, max_source_length, max_target_length, batch_size, training,
             seed, num_buckets, start_batch):
    """parallel_dataset's batches of already framed pairs (see _framed_pairs)."""
    widths = tf.constant(bucket_widths(max_source_length, max_target_length, num_buckets),
                         tf.int32)
    pad_id = tf.cast(pad_id, tf.int32)
    columns = pairs.columns

    def lengths(batch):
        return [tf.cast(batch[f"{side}_ids"].row_lengths(), tf.int32) for side in SIDES]

    def bucket_of(source_length, target_length):
        # Widths grow in both columns, so the first bucket that fits both is the narrowest.
        fits = ((source_length[..., tf.newaxis] <= widths[:, 0])
                & (target_length[..., tf.newaxis] <= widths[:, 1]))
        return tf.argmax(tf.cast(fits, tf.int32), axis=-1, output_type=tf.int32)

    def pad_to_bucket(batch):
        side_lengths = lengths(batch)
        bucket = bucket_of(*(tf.reduce_max(length) for length in side_lengths))
        features = {}
        for column, (side, length) in enumerate(zip(SIDES, side_lengths)):
            width = widths[bucket, column]
            features[f"{side}_ids"] = batch[f"{side}_ids"].to_tensor(
                pad_id, shape=tf.stack([-1, width]))
            features[f"{side}_padding_mask"] = tf.sequence_mask(length, width, dtype=tf.int32)
        return features

    if training:
        batches = shuffled_batches(
            len(pairs), batch_size, seed=seed, start_batch=start_batch,
            bucket_keys=bucket_of(*lengths(columns)).numpy()).map(
            lambda number, rows: {name: tf.gather(value, rows) for name, value in columns.items()})
    else:
        batches = tf.data.Dataset.from_tensor_slices(columns).batch(batch_size)
    batches = batches.map(pad_to_bucket, num_parallel_calls=tf.data.AUTOTUNE)
    if training:
        batches = batches.map(lambda batch: {
            key: tf.ensure_shape(value, [batch_size, None]) for key, value in batch.items()})
    return batches.prefetch(tf.data.AUTOTUNE)


def parallel_dataset_fn(sources, targets, tokenizer, *, global_batch_size, max_source_length,
                        max_target_length, bos_id, eos_id, seed=None, num_buckets=8):
    """A training dataset_fn for kerasllm.training.loop.train: each input pipeline
    reads every num_input_pipelines-th pair (disjoint shares), with its own seed
    (see kerasllm.data.batching.sharded_dataset_fn). The pairs are tokenized once,
    here, not by each pipeline.

    Args: as parallel_dataset's, global_batch_size being the batch of all replicas.

    Returns:
      Callable[[tf.distribute.InputContext, int], tf.data.Dataset]: the
      pipeline's batches from `start_batch` on (see parallel_dataset).
    """
    _check_settings(sources, targets, max_source_length, max_target_length,
                    global_batch_size, num_buckets)

    return sharded_dataset_fn(
        _framed_pairs(sources, targets, tokenizer, max_source_length, max_target_length,
                      bos_id, eos_id),
        functools.partial(_batches, pad_id=tokenizer.pad_id, max_source_length=max_source_length,
                          max_target_length=max_target_length, training=True,
                          num_buckets=num_buckets),
        global_batch_size=global_batch_size, seed=seed)
