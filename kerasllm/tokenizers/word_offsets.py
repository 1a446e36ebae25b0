"""Words of a text, their byte offsets in it, and their WordPiece pieces, in graph ops.

`WordPieceTokenizer` cleans the whole text (deletes control characters, strips
accents, case-folds) before it splits words, and cleaning can change byte
lengths ("É" is 2 bytes, "e" 1), so its words cannot be located in the input.
Here the ORIGINAL text is split with the tokenizer's own patterns, each word
keeps its byte span, and each word is then cleaned and split into pieces by the
tokenizer on its own. Offsets are byte offsets into the UTF-8 input:
`text[start:end]` (in bytes) is the word as the user wrote it.

A word that cleaning empties (only zero-width or control characters) has no
pieces and is dropped. Model inputs built from `piece_ids()` therefore match the
words exactly; they equal `tokenizer.tokenize(text)` except that a form feed
(which the tokenizer deletes before splitting) separates words here.
"""
from typing import NamedTuple

import tensorflow as tf
import tensorflow_text as tf_text

from kerasllm.tokenizers.wordpiece import _KEEP_PATTERN, _SPLIT_PATTERN


class AlignedWords(NamedTuple):
    """The words of a batch of texts and their pieces (W: words, P: pieces).

    words: string [batch, (W)], the words as written in the input;
    starts, ends: int64 [batch, (W)], byte offsets of each word in its text;
    pieces: int32 [batch, (W), (P)], WordPiece ids of each word (P >= 1).
    """

    words: tf.RaggedTensor
    starts: tf.RaggedTensor
    ends: tf.RaggedTensor
    pieces: tf.RaggedTensor

    def piece_ids(self):
        """int32 [batch, (T)]: every piece of each text, the tokenizer's tokens."""
        return self.pieces.merge_dims(1, 2)

    def first_pieces(self):
        """int64 [batch, (W)]: index in `piece_ids()` of each word's first piece."""
        word_starts = self.pieces.values.row_starts()  # in the batch's flat pieces
        text_starts = self.piece_ids().row_starts()
        return self.words.with_flat_values(
            word_starts - tf.repeat(text_starts, self.words.row_lengths()))

    def piece_offsets(self):
        """(starts, ends): int64 [batch, (T)], the byte span of each piece's word."""
        pieces_per_word = self.pieces.values.row_lengths()
        row_splits = self.piece_ids().row_splits
        return tuple(
            tf.RaggedTensor.from_row_splits(tf.repeat(offsets.flat_values, pieces_per_word),
                                            row_splits)
            for offsets in (self.starts, self.ends))


def tokenize_words_with_offsets(tokenizer, text):
    """string [batch] -> AlignedWords for a WordPieceTokenizer; pure graph ops."""
    text = tf.convert_to_tensor(text, dtype=tf.string)
    # regex_split reads C strings, so a NUL would end the text early; \x01 has the
    # same byte length and, like NUL, is deleted by the tokenizer.
    searchable = tf.strings.regex_replace(text, r"\x00", "\x01")
    _, starts, ends = tf_text.regex_split_with_offsets(searchable, _SPLIT_PATTERN,
                                                       _KEEP_PATTERN)
    words = starts.with_flat_values(tf.strings.substr(
        tf.repeat(text, starts.row_lengths()), starts.flat_values,
        ends.flat_values - starts.flat_values))
    # Each word on its own; merging drops the word level the tokenizer adds, which
    # only has more than one entry if cleaning exposed a split character.
    word_pieces = tokenizer.tokenize_words(words.flat_values).merge_dims(1, 2)
    pieces = tf.RaggedTensor.from_row_splits(word_pieces, words.row_splits)
    has_pieces = words.with_flat_values(word_pieces.row_lengths() > 0)
    return AlignedWords(*(tf.ragged.boolean_mask(values, has_pieces)
                          for values in (words, starts, ends, pieces)))
