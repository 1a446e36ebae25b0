"""A GPT-2-style byte-level BPE tokenizer made only of TensorFlow graph ops.

Every step is a core TF op (regex_replace, string split, hash-table lookups, a
while loop) and the lookup tables are attributes of this tf.Module, so the
tokenizer can be tracked into a SavedModel (e.g. with
`keras.export.ExportArchive().track(tokenizer)`) and serve raw text in TF Serving.

Pipeline, as Hugging Face `tokenizers` runs a byte-level BPE model:
  1. split off the special tokens written in the text (and, for the "smollm"
     pre-tokenizer, every digit), then split the rest into pieces with GPT-2's
     regular expression (see byte_pretokenizer);
  2. map each piece's UTF-8 bytes to the tokens of single bytes, dropping bytes
     the vocabulary has no token for (as Hugging Face does; GPT-2 has all 256);
  3. merge pairs of tokens in the order of the merges list (see byte_merges),
     once per distinct piece of the batch.
Detokenizing joins the bytes of the tokens, so text without special tokens comes
back exactly (bar dropped bytes); special tokens come back as their text.
"""
import os

import tensorflow as tf

from kerasllm.errors import DataError
from kerasllm.tokenizers.base import Tokenizer
from kerasllm.tokenizers.byte_merges import NO_MERGE, merge_words, pair_keys
from kerasllm.tokenizers.byte_pretokenizer import isolation_pattern, pretokenize
from kerasllm.tokenizers.byte_vocab import (MERGES_FILE, VOCAB_FILE, byte_alphabet,
                                            load_merges, load_vocab_json, save_merges,
                                            save_vocab_json, tokens_to_bytes, validate_vocab)
from kerasllm.tokenizers.lm_packing import pack_lm_segments

GPT2_END_OF_TEXT = "<|endoftext|>"


def _batch_of_strings(text):
    text = tf.convert_to_tensor(text, dtype=tf.string)
    if text.shape.rank != 1:
        raise ValueError(f"ByteLevelBpeTokenizer expects a 1-D batch of strings [batch], got "
                         f"shape {text.shape}; wrap a single string in a list.")
    return text


# Called eagerly, tokenize's ops (one per merge round in its loop) would each be
# dispatched from Python: ~20 ms for a sentence. Traced once per tokenizer, ~3 ms.
# Inside a tf.function (tf.data, an export) the ops are traced into the caller.
_traced_tokenize = tf.function(lambda tokenizer, text: tokenizer._tokenize(text),
                               reduce_retracing=True)


class ByteLevelBpeTokenizer(Tokenizer):
    """Text <-> byte-level BPE ids (GPT-2, SmolLM2, ...), usable inside tf.function
    and SavedModels.

    Args:
      vocabulary: list of tokens in GPT-2's byte alphabet, id = index.
      merges: list of (left, right) token pairs, best first.
      special_tokens: tokens matched whole in the text and mapped to their ids,
        e.g. ("<|endoftext|>",) or ("<|im_start|>", "<|im_end|>", ...).
      pretokenizer: "gpt2" or "smollm" (see byte_pretokenizer).
      bos_id: id `pack` puts first, or None for models trained without one.
      eos_id: id that ends a text, or None.
      pad_id: id `pack` pads with; defaults to eos_id.
    """

    kind = "byte_bpe"
    files = (VOCAB_FILE, MERGES_FILE)

    def __init__(self, vocabulary, merges, special_tokens=(), pretokenizer="gpt2",
                 bos_id=None, eos_id=None, pad_id=None, name=None):
        super().__init__(name=name)
        vocabulary = list(vocabulary)
        merges = [tuple(merge) for merge in merges]
        special_tokens = tuple(special_tokens)
        validate_vocab(vocabulary, merges, special_tokens)
        # ints, not numpy scalars (as a GGUF reader gives them): settings() is JSON.
        bos_id, eos_id, pad_id = (None if value is None else int(value)
                                  for value in (bos_id, eos_id, pad_id))
        pad_id = eos_id if pad_id is None else pad_id
        if pad_id is None:
            raise DataError("A byte-level BPE tokenizer needs a pad_id (or an eos_id to pad "
                            "with) for `pack`.")
        for setting, value in (("bos_id", bos_id), ("eos_id", eos_id), ("pad_id", pad_id)):
            if value is not None and not 0 <= value < len(vocabulary):
                raise DataError(f"{setting}={value} is not an id of the {len(vocabulary)}-token "
                                "vocabulary.")
        self._isolate = isolation_pattern(pretokenizer, special_tokens)
        self._pretokenizer = pretokenizer
        self._bos_id, self._eos_id, self._pad_id = bos_id, eos_id, pad_id
        # Tuples keep tf.Module from wrapping them as tracked lists.
        self._vocabulary = tuple(vocabulary)
        self._merges = tuple(merges)
        self._special_tokens = special_tokens
        token_id = {token: index for index, token in enumerate(vocabulary)}
        self._tokens = tf.constant(vocabulary, tf.string)
        self._token_bytes = tf.constant(tokens_to_bytes(vocabulary), tf.string)
        # -1 marks a byte without a token of its own; such bytes are dropped.
        self._byte_ids = tf.constant([token_id.get(char, -1) for char in byte_alphabet()],
                                     tf.int32)
        # A pair listed twice keeps its last rank, as in GPT-2 and Hugging Face.
        rank_of = {(token_id[left], token_id[right]): rank
                   for rank, (left, right) in enumerate(merges)}
        # A table cannot be empty: without merges (or special tokens) it holds one
        # key that never occurs (pair keys are >= 0, pieces are non-empty).
        pairs = list(rank_of) or [(-1, 0)]
        self._merged_ids = tf.constant([token_id[left + right] for left, right in merges]
                                       or [0], tf.int32)
        self._pair_ranks = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                pair_keys(tf.constant([left for left, _ in pairs], tf.int64),
                          tf.constant([right for _, right in pairs], tf.int64),
                          len(vocabulary)),
                tf.constant(list(rank_of.values()) or [NO_MERGE], tf.int64)),
            default_value=NO_MERGE)
        self._special_ids = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(special_tokens or ("",), tf.string),
                tf.constant([token_id[token] for token in special_tokens] or [-1], tf.int64)),
            default_value=-1)

    @classmethod
    def from_gpt2_files(cls, encoder_json, vocab_bpe, **kwargs):
        """GPT-2's tokenizer from its encoder.json (vocabulary) and vocab.bpe (merges).

        "<|endoftext|>" is the special token, eos and pad; GPT-2 uses no bos.
        Keyword arguments override these settings.
        """
        vocabulary = load_vocab_json(encoder_json)
        end_of_text = vocabulary.index(GPT2_END_OF_TEXT) if GPT2_END_OF_TEXT in vocabulary \
            else None
        settings = {"special_tokens": (GPT2_END_OF_TEXT,) if end_of_text is not None else (),
                    "pretokenizer": "gpt2", "eos_id": end_of_text}
        settings.update(kwargs)
        return cls(vocabulary, load_merges(vocab_bpe), **settings)

    def settings(self):
        return {"kind": self.kind, "pretokenizer": self._pretokenizer,
                "special_tokens": list(self._special_tokens), "bos_id": self._bos_id,
                "eos_id": self._eos_id, "pad_id": self._pad_id}

    def save(self, directory):
        save_vocab_json(self._vocabulary, os.path.join(directory, VOCAB_FILE))
        save_merges(self._merges, os.path.join(directory, MERGES_FILE))
        return self.settings()

    @classmethod
    def load(cls, directory, settings):
        options = {key: value for key, value in settings.items() if key != "kind"}
        return cls(load_vocab_json(os.path.join(directory, VOCAB_FILE)),
                   load_merges(os.path.join(directory, MERGES_FILE)), **options)

    @property
    def vocabulary(self):
        return list(self._vocabulary)

    @property
    def merges(self):
        return list(self._merges)

    @property
    def vocab_size(self):
        return len(self._vocabulary)

    @property
    def bos_id(self):
        return self._bos_id

    @property
    def eos_id(self):
        return self._eos_id

    @property
    def pad_id(self):
        return self._pad_id

    def special_ids(self):
        return {token: self._vocabulary.index(token) for token in self._special_tokens}

    def split_pieces(self, text):
        """Pre-tokenization: string [batch] -> string RaggedTensor [batch, (pieces)]; a
        special token in the text is a piece of its own."""
        return pretokenize(_batch_of_strings(text), self._isolate)

    def _merge_pieces(self, pieces):
        """string [n] -> int32 RaggedTensor [n, (tokens)], each distinct piece merged once."""
        distinct, index = tf.unique(pieces)
        byte_values = tf.strings.unicode_decode(distinct, "ISO-8859-1")  # one code per byte
        symbols = tf.ragged.map_flat_values(tf.gather, self._byte_ids, byte_values)
        symbols = tf.ragged.boolean_mask(symbols, symbols >= 0)
        merged = merge_words(symbols, self._pair_ranks, self._merged_ids, self.vocab_size)
        return tf.gather(merged, index)

    def tokenize(self, text):
        """string [batch] -> int32 RaggedTensor [batch, (tokens)]; "" gives no tokens."""
        text = _batch_of_strings(text)
        if tf.executing_eagerly():
            return _traced_tokenize(self, text)
        return self._tokenize(text)

    def _tokenize(self, text):
        pieces = pretokenize(text, self._isolate)
        special = tf.cast(self._special_ids.lookup(pieces.flat_values), tf.int32)
        is_special = special >= 0
        # Special pieces are merged as "" (no tokens) and get their id instead.
        merged = self._merge_pieces(tf.where(is_special, "", pieces.flat_values))
        special = tf.RaggedTensor.from_row_lengths(tf.boolean_mask(special, is_special),
                                                   tf.cast(is_special, tf.int64))
        return pieces.with_flat_values(tf.concat([special, merged], axis=1)).merge_dims(1, 2)

    def id_to_token(self, ids):
        """int ids (dense or ragged, any shape) -> tf.string tokens of the same shape, in the
        byte alphabet ("Ġworld"); ids outside the vocabulary give ""."""
        if isinstance(ids, tf.RaggedTensor):
            return tf.ragged.map_flat_values(self.id_to_token, ids)
        return self._lookup(self._tokens, ids)

    def _lookup(self, by_id, ids):
        ids = tf.cast(ids, tf.int64)
        known = (ids >= 0) & (ids < self.vocab_size)
        return tf.where(known, tf.gather(by_id, tf.where(known, ids, 0)), "")

    def token_texts(self, ids):
        """Each id's own bytes as UTF-8 ("Ġworld" -> " world"); a character whose
        bytes are split over tokens becomes U+FFFD in each, special tokens give their
        text, ids outside the vocabulary ""."""
        return tf.strings.unicode_transcode(self._lookup(self._token_bytes, ids), "UTF-8",
                                            "UTF-8", errors="replace",
                                            replacement_char=0xFFFD)

    def detokenize(self, ids):
        """int ids [batch, tokens] (dense or ragged) -> UTF-8 string [batch].

        Dense rows lose their padding: the pad_id tokens at their end, where `pack`
        puts them (pad_id is often eos, which a ragged row keeps). Ids outside the
        vocabulary give nothing, special tokens their text. Bytes that are not
        UTF-8 (possible for arbitrary ids) become U+FFFD.
        """
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.cast(tf.convert_to_tensor(ids), tf.int64)
            # Each row up to its last non-pad token.
            position = tf.range(1, tf.shape(ids, out_type=tf.int64)[1] + 1)
            end = tf.reduce_max(position * tf.cast(tf.not_equal(ids, self.pad_id), tf.int64),
                                axis=1)
            # (max of an empty row is the lowest int64)
            ids = tf.RaggedTensor.from_tensor(ids, lengths=tf.maximum(end, 0))
        pieces = tf.ragged.map_flat_values(self._lookup, self._token_bytes, ids)
        text = tf.strings.reduce_join(pieces, axis=-1)
        return tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace",
                                            replacement_char=0xFFFD)

    def pack(self, segments, max_seq_length):
        """Token segments -> a decoder-only LM's inputs, "<s> a (</s> b ...)" (no <s>
        if the model uses none) padded with pad_id: see lm_packing.pack_lm_segments."""
        return pack_lm_segments(segments, max_seq_length, self.bos_id, self.eos_id,
                                self.pad_id)
