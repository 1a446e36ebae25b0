"""Tagged words for token classification (e.g. named entities): files -> examples
-> packed inputs for a BertTokenClassifier.

File formats, chosen by extension (UTF-8):
  .jsonl          one sentence per line:
                  {"words": ["Anna", "met", "Bob"], "labels": ["NAME", "O", "NAME"]},
                  one label per word.
  .conll / .tsv   one word per line, "word<TAB>label"; blank lines separate
                  sentences; a "-DOCSTART-" word (CoNLL-2003's document break)
                  is skipped.
Every problem is a TaggedTextError naming the file and line.

Alignment. The words are the file's: each is split into WordPiece pieces on its
own, its label goes on its first piece and later pieces get weight 0 in the
loss, the way the exported `tag` signature reads a word's label at its first
piece. A file word the tokenizer splits into several words ("U.S." becomes
U . S .) is trained on its first piece only, while the signature tags each of
those words; a word the tokenizer empties (only control or zero-width
characters) has no piece and is not trained on, like the signature drops it.
"""
import collections

import tensorflow as tf

from kerasllm.data.batching import PackedExamples
from kerasllm.data.example_files import (STRINGS, ExampleFileError, check_fields, file_format,
                                         jsonl_objects, label_lookup, line_error,
                                         numbered_lines, read_records)
from kerasllm.tokenizers.segment_packing import join_segments

WORDS, LABELS = "words", "labels"
FORMATS = (".jsonl", ".conll", ".tsv")
OUTSIDE = "O"  # the "no entity" label, first in a default label set
DOCUMENT_START = "-DOCSTART-"


class TaggedTextError(ExampleFileError):
    """A tagged-text file is unreadable or has a malformed line."""


TaggedExample = collections.namedtuple("TaggedExample", ["words", "labels"])
TaggedExample.__doc__ = "One sentence: words (tuple of str), label ids (tuple of int), as many."


def _error(path, line, message):
    return line_error(TaggedTextError, path, line, message)


def _jsonl_sentences(path, f):
    """(line, label lines, words, labels) per line; every label's line is the record's."""
    for line, record in jsonl_objects(path, f, TaggedTextError):
        check_fields(path, line, record, TaggedTextError,
                     required={WORDS: STRINGS, LABELS: STRINGS})
        words, labels = record[WORDS], record[LABELS]
        if len(words) != len(labels):
            raise _error(path, line, f"{len(words)} words but {len(labels)} labels; give "
                         "one label per word")
        yield line, [line] * len(words), words, labels


def _conll_sentences(path, f):
    """(first line, label lines, words, labels) per blank-line separated block of
    word<TAB>label lines."""
    lines, words, labels = [], [], []
    for line, text in numbered_lines(f):
        if not text.strip():
            if words:
                yield lines[0], lines, words, labels
            lines, words, labels = [], [], []
            continue
        fields = text.split("\t")
        if len(fields) != 2:
            raise _error(path, line, f"expected word<TAB>label, got {len(fields)} "
                         "tab-separated field(s)")
        if fields[0] == DOCUMENT_START:
            continue
        if len(fields[0].split()) > 1:
            raise _error(path, line, f"{fields[0][:40]!r} is several words; a word<TAB>label "
                         "line holds one word (a file of text<TAB>label lines is for "
                         "--task=classify)")
        lines.append(line)
        words.append(fields[0])
        labels.append(fields[1])
    if words:
        yield lines[0], lines, words, labels


def default_label_names(labels):
    """The sorted set of `labels`, with "O" (outside any entity) first if present."""
    return sorted(set(labels), key=lambda label: (label != OUTSIDE, label))


def read_tagged_text(path, label_names=None):
    """Reads one tagged-text file (formats in the module docstring).

    Args:
      path: a .jsonl, .conll or .tsv file.
      label_names: the label set, in label-id order; a label outside it is an
        error. None: default_label_names of the file's labels.
    Returns:
      (examples, label_names): a list of TaggedExample whose labels index the
      tuple `label_names`.
    Raises:
      TaggedTextError: unreadable file, bad JSON, missing or mistyped field,
        empty line (JSONL), words and labels of different lengths, a line not
        word<TAB>label or whose word has spaces in it, an empty word or label, a
        sentence without words, an unknown label, or no examples.
    """
    parse = (_jsonl_sentences if file_format(path, FORMATS, TaggedTextError) == ".jsonl"
             else _conll_sentences)
    sentences = []
    for first_line, lines, words, labels in read_records(path, lambda f: parse(path, f),
                                                         TaggedTextError):
        if not words:
            raise _error(path, first_line, "a sentence without words")
        labels = [label.strip() for label in labels]
        for line, word, label in zip(lines, words, labels):
            if not word.strip():
                raise _error(path, line, "empty word")
            if not label:
                raise _error(path, line, f"empty label for the word {word!r}")
        sentences.append((lines, words, labels))
    if not sentences:
        raise TaggedTextError(f"{path} has no examples")
    if label_names is None:
        label_names = default_label_names(
            label for _, _, labels in sentences for label in labels)
    label_names = tuple(label_names)
    label_id = label_lookup(path, label_names, TaggedTextError)
    return [TaggedExample(tuple(words), tuple(map(label_id, lines, labels)))
            for lines, words, labels in sentences], label_names


TaggingInputs = collections.namedtuple("TaggingInputs", ["examples", "num_words", "num_tagged"])
TaggingInputs.__doc__ = """tagging_inputs' result: `examples` PackedExamples; `num_words`
the words of the file, `num_tagged` those labelled in `examples` (the rest were
cut off by max_seq_length or have no piece)."""


def tagging_inputs(examples, tokenizer, max_seq_length):
    """Tokenizes and packs tagged sentences as "[CLS] pieces [SEP]" for a BertTokenClassifier.

    Args:
      examples: non-empty list of TaggedExample.
      tokenizer: WordPieceTokenizer.
      max_seq_length: S; the pieces past S - 2 are cut off, with their labels.
    Returns:
      TaggingInputs whose examples have columns token_ids, segment_ids int32
      [n, (L)], labels int32 [n, (L)] (the word's label at its first piece, 0
      elsewhere) and label_weights float32 [n, (L)] (1 at the first piece of
      each word, 0 on later pieces, [CLS] and [SEP]), L <= S.
    """
    words_per_sentence = [len(e.words) for e in examples]
    words = tf.constant([word for e in examples for word in e.words], tf.string)
    word_labels = tf.constant([label for e in examples for label in e.labels], tf.int32)
    # Each word on its own: [word, (pieces)], then regrouped by sentence.
    word_pieces = tokenizer.tokenize(words)
    pieces_per_word = word_pieces.row_lengths()
    pieces = tf.RaggedTensor.from_row_lengths(word_pieces, words_per_sentence)

    def per_piece(values):
        """[n, (pieces)] from values of every piece, in the order of `pieces`."""
        return pieces.with_flat_values(values).merge_dims(1, 2)

    piece_labels = per_piece(tf.repeat(word_labels, pieces_per_word))
    is_first_piece = tf.ragged.range(pieces_per_word).flat_values == 0
    piece_weights = per_piece(tf.cast(is_first_piece, tf.int32))
    token_ids, segment_ids = tokenizer.join([pieces.merge_dims(1, 2)], max_seq_length)
    # Labels and weights are packed like the pieces, so they are cut off exactly
    # where the pieces are, and 0 (weight 0) stands at [CLS] and [SEP].
    labels, _ = join_segments([piece_labels], max_seq_length, 0, 0)
    weights, _ = join_segments([piece_weights], max_seq_length, 0, 0)
    packed = PackedExamples({"token_ids": token_ids, "segment_ids": segment_ids,
                             "labels": labels, "label_weights": tf.cast(weights, tf.float32)})
    return TaggingInputs(packed, int(words.shape[0]), int(tf.reduce_sum(weights)))
