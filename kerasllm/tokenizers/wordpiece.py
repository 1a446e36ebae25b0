"""A BERT WordPiece tokenizer made only of TensorFlow / tensorflow-text graph ops.

Because every step is a TF op and both lookup tables are attributes of this
tf.Module, the tokenizer can be tracked into a SavedModel (for example with
`keras.export.ExportArchive().track(tokenizer)`) and serve raw text.

Pipeline, following the original BERT "basic" tokenizer:
  1. optionally strip accents (NFD, then drop combining marks);
  2. split on whitespace and control characters (dropped) and on punctuation
     and CJK ideographs (each kept as a one-character word); the special tokens
     "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" written in the text are kept
     whole so users can type e.g. "the [MASK] of denmark";
  3. optionally lower-case (Unicode case folding) every word but special tokens;
  4. split words into WordPiece pieces ("##" marks a continuation piece); words
     longer than `max_chars_per_word` or without a tokenization become [UNK].
"""
import os
import re

import tensorflow as tf
import tensorflow_text as tf_text

from kerasllm.tokenizers.base import Tokenizer
from kerasllm.tokenizers.segment_packing import join_segments, pack_segments
from kerasllm.tokenizers.wordpiece_vocab import (CLS, MASK, PAD, RESERVED_TOKENS, SEP, UNK,
                                                 VOCAB_FILE, load_vocab, save_vocab,
                                                 validate_vocab)

SUFFIX_INDICATOR = "##"

# Whitespace, Unicode space separators and invisible control/format characters
# separate words and are dropped. (RE2's \s alone is ASCII-only.)
_WHITESPACE = r"\s|\p{Zs}"
# As in BERT, NUL, U+FFFD and control/format characters other than whitespace are
# deleted, not split at: "a\u200bb" is one word. (Left in, a NUL would also end
# the text for regex_split, which reads C strings.)
_DELETED = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]|\p{Cf}|\x{FFFD}"
# BERT treats every non-alphanumeric printable ASCII character as punctuation
# (so "$", "^", "`" split words although Unicode calls them symbols), plus all
# Unicode punctuation.
_PUNCTUATION = r"[!-/]|[:-@]|[\[-`]|[{-~]|\p{P}"
# CJK ideographs are split into single characters; BERT's vocabularies list
# them one by one. Ranges are the CJK Unified Ideographs blocks and extensions.
_CJK = (r"[\x{4E00}-\x{9FFF}]|[\x{3400}-\x{4DBF}]|[\x{20000}-\x{2A6DF}]"
        r"|[\x{2A700}-\x{2B73F}]|[\x{2B740}-\x{2B81F}]|[\x{2B820}-\x{2CEAF}]"
        r"|[\x{F900}-\x{FAFF}]|[\x{2F800}-\x{2FA1F}]")
_SPECIAL = "|".join(re.escape(token) for token in RESERVED_TOKENS)
# Alternation is leftmost-first in RE2, so a special token wins over the "["
# punctuation rule that would otherwise split it.
_KEEP_PATTERN = f"{_SPECIAL}|{_PUNCTUATION}|{_CJK}"
_SPLIT_PATTERN = f"{_KEEP_PATTERN}|{_WHITESPACE}"


class WordPieceTokenizer(Tokenizer):
    """Text <-> WordPiece ids for BERT, usable inside tf.function and SavedModels.

    Args:
      vocabulary: list of tokens, id = index; must contain [PAD], [UNK], [CLS],
        [SEP] and [MASK] (see kerasllm.tokenizers.wordpiece_vocab).
      lowercase: case-fold words (not special tokens) before the lookup; True
        for "uncased" vocabularies.
      strip_accents: remove accents (é -> e); defaults to `lowercase`, as in
        the original uncased BERT.
      max_chars_per_word: words with more characters become a single [UNK].
    """

    kind = "wordpiece"
    files = (VOCAB_FILE,)

    def __init__(self, vocabulary, lowercase=True, strip_accents=None, max_chars_per_word=100,
                 name=None):
        super().__init__(name=name)
        vocabulary = list(vocabulary)
        validate_vocab(vocabulary)
        self._lowercase = bool(lowercase)
        self._strip_accents = self._lowercase if strip_accents is None else bool(strip_accents)
        self._max_chars_per_word = int(max_chars_per_word)
        # A tuple keeps tf.Module from wrapping 30k strings as tracked list items.
        self._vocabulary = tuple(vocabulary)
        self._special_ids = {token: vocabulary.index(token) for token in RESERVED_TOKENS}
        ids = tf.range(len(vocabulary), dtype=tf.int64)
        tokens = tf.constant(vocabulary, dtype=tf.string)
        self._token_to_id = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tokens, ids), default_value=self.unk_id)
        self._id_to_token = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(ids, tokens), default_value=UNK)
        self._wordpiece = tf_text.WordpieceTokenizer(
            self._token_to_id, suffix_indicator=SUFFIX_INDICATOR,
            # Over-long words are replaced by [UNK] before this op (counting
            # characters, not bytes); 4 bytes per character never cuts earlier.
            max_bytes_per_word=4 * self._max_chars_per_word,
            token_out_type=tf.int64, unknown_token=UNK)

    @classmethod
    def from_vocab_file(cls, path, **kwargs):
        """A tokenizer for the vocab.txt at `path` (validated by load_vocab)."""
        return cls(load_vocab(path), **kwargs)

    def settings(self):
        return {"kind": self.kind, "lowercase": self._lowercase,
                "strip_accents": self._strip_accents,
                "max_chars_per_word": self._max_chars_per_word}

    def save(self, directory):
        save_vocab(self._vocabulary, os.path.join(directory, VOCAB_FILE))
        return self.settings()

    @classmethod
    def load(cls, directory, settings):
        options = {key: value for key, value in settings.items() if key != "kind"}
        return cls.from_vocab_file(os.path.join(directory, VOCAB_FILE), **options)

    def special_ids(self):
        return dict(self._special_ids)

    @property
    def vocabulary(self):
        return list(self._vocabulary)

    @property
    def vocab_size(self):
        return len(self._vocabulary)

    @property
    def lowercase(self):
        return self._lowercase

    @property
    def pad_id(self):
        return self._special_ids[PAD]

    @property
    def unk_id(self):
        return self._special_ids[UNK]

    @property
    def cls_id(self):
        return self._special_ids[CLS]

    @property
    def sep_id(self):
        return self._special_ids[SEP]

    @property
    def mask_id(self):
        return self._special_ids[MASK]

    def join(self, segments, max_seq_length):
        """"[CLS] a [SEP] (b [SEP])", unpadded: see segment_packing.join_segments."""
        return join_segments(segments, max_seq_length, self.cls_id, self.sep_id)

    def pack(self, segments, max_seq_length, pad_to_max_length=True):
        """{"token_ids", "segment_ids", "padding_mask"} int32 [batch, S] for "[CLS] a
        [SEP] (b [SEP])", S = max_seq_length, or the batch's longest row with
        pad_to_max_length=False: see segment_packing.pack_segments."""
        return pack_segments(segments, max_seq_length, self.cls_id, self.sep_id, self.pad_id,
                             pad_to_max_length)

    def split_words(self, text):
        """Basic (pre-WordPiece) tokenization: string [batch] -> string [batch, (words)]."""
        text = tf.convert_to_tensor(text, dtype=tf.string)
        if text.shape.rank != 1:
            raise ValueError(f"WordPieceTokenizer expects a 1-D batch of strings [batch], got "
                             f"shape {text.shape}; wrap a single string in a list.")
        text = tf.strings.regex_replace(text, _DELETED, "")
        if self._strip_accents:
            text = tf.strings.regex_replace(tf_text.normalize_utf8(text, "NFD"), r"\p{Mn}", "")
        words = tf_text.regex_split(text, _SPLIT_PATTERN, _KEEP_PATTERN)
        if self._lowercase:
            is_special = tf.strings.regex_full_match(words.flat_values, _SPECIAL)
            words = words.with_flat_values(tf.where(
                is_special, words.flat_values, tf_text.case_fold_utf8(words.flat_values)))
        too_long = tf.strings.length(words.flat_values, unit="UTF8_CHAR") > \
            self._max_chars_per_word
        return words.with_flat_values(tf.where(too_long, UNK, words.flat_values))

    def tokenize_words(self, text):
        """string [batch] -> int32 RaggedTensor [batch, (words), (pieces)]."""
        pieces = self._wordpiece.tokenize(self.split_words(text))
        return tf.cast(pieces, tf.int32)

    def tokenize(self, text):
        """string [batch] -> int32 RaggedTensor [batch, (tokens)]; "" gives no tokens."""
        return self.tokenize_words(text).merge_dims(1, 2)

    def id_to_token(self, ids):
        """int ids (dense or ragged, any shape) -> tf.string tokens of the same shape.

        Ids outside the vocabulary map to "[UNK]".
        """
        if isinstance(ids, tf.RaggedTensor):
            return tf.ragged.map_flat_values(self.id_to_token, ids)
        return self._id_to_token.lookup(tf.cast(ids, tf.int64))

    def detokenize(self, ids):
        """int ids [batch, tokens] (dense or ragged) -> string [batch].

        Pieces are joined with spaces, "##" continuations glued to their word
        and [PAD] dropped; other special tokens are kept. Lower-casing, accent
        stripping and spacing around punctuation are not undone.
        """
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(ids))
        ids = tf.ragged.boolean_mask(ids, tf.not_equal(ids, tf.cast(self.pad_id, ids.dtype)))
        text = tf.strings.reduce_join(self.id_to_token(ids), axis=-1, separator=" ")
        return tf.strings.regex_replace(text, f"(^| ){re.escape(SUFFIX_INDICATOR)}", "")
