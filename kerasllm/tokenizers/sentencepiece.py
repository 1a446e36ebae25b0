"""A SentencePiece tokenizer made of tensorflow-text graph ops, and its trainer.

The serialized model proto is the whole tokenizer: `tf_text.SentencepieceTokenizer`
runs it in-graph (its resource is tracked by this tf.Module, so the proto goes
into the SavedModel and TF Serving tokenizes raw text without Python), and the
`sentencepiece` package is used only on the host, to train a model and to
validate one before the graph op sees it (the op fails late and opaquely on a
corrupt proto, and crashes the process on an id outside the vocabulary, so ids
are range-checked first).

`train_sentencepiece` makes models for GPTs trained from scratch, chosen so that
detokenize(tokenize(text)) == text for any valid UTF-8 text:
  * identity normalization: no NFKC ("ﬁ" stays "ﬁ", full-width stays full-width),
    whitespace runs, leading/trailing spaces, tabs and newlines are all kept;
  * no dummy prefix: a text is not given a leading space, so a word at the start
    of a line tokenizes the same during training (lines) and in the LM token
    stream (lines joined by "\\n"): ~12% fewer tokens on Shakespeare than with one;
  * byte fallback: characters outside the vocabulary become UTF-8 byte pieces
    ("<0xE4>", ...), so no text is ever <unk>;
  * fixed special ids: <pad> 0, <unk> 1, <s> 2 (bos), </s> 3 (eos); digits are
    split into single-digit pieces.
Round-trip exceptions: invalid UTF-8 input comes back with U+FFFD in place of the
bad bytes, and a literal U+2581 "▁" (SentencePiece's own space marker) comes back
as a space.
"""
import io
import os
import re

import sentencepiece
import tensorflow as tf
import tensorflow_text as tf_text

from kerasllm.atomic_files import write_atomically
from kerasllm.errors import DataError
from kerasllm.tokenizers.base import Tokenizer
from kerasllm.tokenizers.lm_packing import pack_lm_segments

MODEL_FILE = "sentencepiece.model"
MODEL_TYPES = ("unigram", "bpe")
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

# What train_sentencepiece always asks of the trainer (see the module docstring).
_TRAINER_OPTIONS = {
    "pad_id": PAD_ID, "unk_id": UNK_ID, "bos_id": BOS_ID, "eos_id": EOS_ID,
    "pad_piece": PAD, "unk_piece": UNK, "bos_piece": BOS, "eos_piece": EOS,
    "byte_fallback": True,
    "normalization_rule_name": "identity",
    "remove_extra_whitespaces": False,
    "add_dummy_prefix": False,
    # Indentation and other whitespace runs may become pieces of their own.
    "allow_whitespace_only_pieces": True,
    "split_digits": True,
    # 0 = every sentence, in order: the trainer then never samples, which keeps
    # training deterministic.
    "input_sentence_size": 0,
    # The default (4192 bytes) silently skips longer lines; paragraphs-per-line
    # corpora have many.
    "max_sentence_length": 1 << 16,
    # Only errors; they also come back as the RuntimeError's message.
    "minloglevel": 2,
}


class SentencePieceModelError(DataError):
    """A SentencePiece model file or proto is missing, corrupt or lacks <s> / </s>."""


class SentencePieceTrainingError(DataError):
    """A SentencePiece model cannot be trained from this corpus with these settings."""


class SentencePieceTokenizer(Tokenizer):
    """Text <-> SentencePiece ids, usable inside tf.function and SavedModels.

    Args:
      model_proto: bytes, a serialized SentencePiece ModelProto (the contents of
        a `.model` file), e.g. from `train_sentencepiece` or a pretrained model.
        It must define <s> and </s>; a model without a pad piece (most
        pretrained ones) pads with </s>. Text round-trips exactly only through
        models that do not normalize, as train_sentencepiece's; pretrained ones
        usually apply NFKC and collapse whitespace runs.

    Raises:
      SentencePieceModelError: `model_proto` is not a loadable SentencePiece model
        or has no bos / eos piece.
    """

    kind = "sentencepiece"
    files = (MODEL_FILE,)

    def __init__(self, model_proto, name=None):
        super().__init__(name=name)
        model_proto = bytes(model_proto)
        processor = sentencepiece.SentencePieceProcessor()
        try:
            processor.LoadFromSerializedProto(model_proto)
        except RuntimeError as error:
            raise SentencePieceModelError(
                f"not a SentencePiece model ({len(model_proto)} bytes): {error}. Pass the "
                "contents of a .model file, e.g. from train_sentencepiece.") from error
        if processor.bos_id() < 0 or processor.eos_id() < 0:
            raise SentencePieceModelError(
                "the SentencePiece model has no <s> (bos) or </s> (eos) piece, which a "
                "decoder-only LM needs; train it with bos_id and eos_id set.")
        self._model_proto = model_proto
        self._vocab_size = processor.GetPieceSize()
        self._unk_id = processor.unk_id()
        self._bos_id = processor.bos_id()
        self._eos_id = processor.eos_id()
        self._pad_id = processor.pad_id() if processor.pad_id() >= 0 else self._eos_id
        self._special_ids = {processor.IdToPiece(i): i for i in sorted(
            {self._pad_id, self._unk_id, self._bos_id, self._eos_id})}
        self._sentencepiece = tf_text.SentencepieceTokenizer(model_proto, out_type=tf.int32)

    @classmethod
    def from_file(cls, path):
        """The tokenizer of the SentencePiece `.model` file at `path`.

        Raises:
          SentencePieceModelError: the file is missing, unreadable or not a
            usable SentencePiece model.
        """
        try:
            with open(path, "rb") as f:
                model_proto = f.read()
        except OSError as error:
            raise SentencePieceModelError(
                f"cannot read SentencePiece model file {os.fspath(path)!r}: {error}.") \
                from error
        try:
            return cls(model_proto)
        except SentencePieceModelError as error:
            raise SentencePieceModelError(f"{os.fspath(path)!r}: {error}") from None

    def settings(self):
        return {"kind": self.kind}

    def save(self, directory):
        """Writes `sentencepiece.model` (the model proto) into `directory`, atomically."""
        write_atomically(os.path.join(directory, MODEL_FILE), self._model_proto)
        return self.settings()

    @classmethod
    def load(cls, directory, settings):
        return cls.from_file(os.path.join(directory, MODEL_FILE))

    @property
    def model_proto(self):
        """bytes, the serialized SentencePiece model (what `save` writes)."""
        return self._model_proto

    @property
    def vocab_size(self):
        return self._vocab_size

    @property
    def pad_id(self):
        """<pad>, or </s> for models without a pad piece."""
        return self._pad_id

    @property
    def unk_id(self):
        return self._unk_id

    @property
    def bos_id(self):
        return self._bos_id

    @property
    def eos_id(self):
        return self._eos_id

    def special_ids(self):
        """{piece: id} of pad, unk, bos and eos, e.g. {"<pad>": 0, "<unk>": 1, "<s>": 2,
        "</s>": 3}."""
        return dict(self._special_ids)

    def tokenize(self, text):
        """string [batch] -> int32 RaggedTensor [batch, (tokens)]; "" gives no tokens.

        No bos/eos is added (see `pack`).
        """
        text = tf.convert_to_tensor(text, dtype=tf.string)
        if text.shape.rank != 1:
            raise ValueError(f"SentencePieceTokenizer expects a 1-D batch of strings [batch], "
                             f"got shape {text.shape}; wrap a single string in a list.")
        return self._sentencepiece.tokenize(text)

    def _known_ids(self, ids):
        """int ids (any shape) -> int32, every id outside [0, vocab_size) replaced by unk.

        The tensorflow-text ops crash the whole process (a server too) on such ids.
        """
        ids = tf.convert_to_tensor(ids)
        known = tf.logical_and(ids >= 0, ids < tf.cast(self._vocab_size, ids.dtype))
        return tf.cast(tf.where(known, ids, tf.cast(self._unk_id, ids.dtype)), tf.int32)

    def id_to_token(self, ids):
        """int ids (dense or ragged, any shape) -> tf.string pieces of the same shape.

        Pieces are SentencePiece's own ("▁the", "<0x0A>", "</s>"); ids outside the
        vocabulary map to the unk piece.
        """
        if isinstance(ids, tf.RaggedTensor):
            return tf.ragged.map_flat_values(self.id_to_token, ids)
        return self._sentencepiece.id_to_string(self._known_ids(ids))

    def token_texts(self, ids):
        """Each id detokenized alone ("▁the" -> " the"): a byte piece gives its byte
        ("<0x0A>" -> "\\n"), U+FFFD where it is part of a longer character; control
        tokens (</s>, padding) give ""."""
        ids = tf.convert_to_tensor(ids)
        text = self._sentencepiece.detokenize(tf.reshape(self._known_ids(ids), [-1, 1]))
        return tf.reshape(text, tf.shape(ids))

    def detokenize(self, ids):
        """int ids [batch, tokens] (dense or ragged) -> string [batch].

        pad, bos and eos are dropped; unk becomes " ⁇ " and ids outside the
        vocabulary count as unk. Byte pieces are reassembled into UTF-8, an
        incomplete or invalid byte sequence becoming U+FFFD.
        """
        if not isinstance(ids, tf.RaggedTensor):
            ids = tf.RaggedTensor.from_tensor(tf.convert_to_tensor(ids))
        ids = ids.with_flat_values(self._known_ids(ids.flat_values))
        dropped = tf.constant(sorted({self._pad_id, self._bos_id, self._eos_id}), tf.int32)
        keep = tf.reduce_all(tf.not_equal(ids.flat_values[:, None], dropped[None, :]), axis=1)
        ids = tf.ragged.boolean_mask(ids, ids.with_flat_values(keep))
        return self._sentencepiece.detokenize(ids)

    def pack(self, segments, max_seq_length):
        """Token segments -> a decoder-only LM's inputs, "<s> a (</s> b ...)" padded
        with pad_id: see lm_packing.pack_lm_segments."""
        return pack_lm_segments(segments, max_seq_length, self._bos_id, self._eos_id,
                                self._pad_id)


def _training_error(message, vocab_size, model_type):
    """The trainer's RuntimeError message -> a SentencePieceTrainingError saying what to do."""
    too_high = re.search(r"Vocabulary size too high .*<= (\d+)", message)
    if too_high:
        return SentencePieceTrainingError(
            f"vocab_size={vocab_size} is more than this corpus supports for "
            f"model_type={model_type!r} (at most {too_high.group(1)}); use a smaller "
            "vocab_size or more text.")
    too_low = re.search(r"smaller than required_chars\. \d+ vs (\d+)", message)
    if too_low:
        return SentencePieceTrainingError(
            f"vocab_size={vocab_size} cannot hold the 4 special pieces, the 256 byte pieces "
            f"and this corpus's characters; use at least {too_low.group(1)} (or lower "
            "character_coverage).")
    return SentencePieceTrainingError(f"SentencePiece training failed: {message}")


def train_sentencepiece(lines, *, vocab_size, model_type="unigram",
                        character_coverage=0.9995, num_threads=1):
    """Trains a SentencePiece model in memory (no files written) -> its tokenizer.

    The settings are those the module docstring describes (identity normalization,
    no dummy prefix, byte fallback, <pad> 0 <unk> 1 <s> 2 </s> 3, split digits).
    The same lines, options and `num_threads` always give the same model (the
    trainer splits its work by thread, so a different thread count may not).

    Args:
      lines: iterable of str, one training sentence each, used as given (spaces
        and all); empty strings are skipped, and so are lines over 64 KiB.
      vocab_size: number of pieces, special and byte pieces included, so more
        than 260; the trainer fails if the corpus cannot fill it.
      model_type: "unigram" or "bpe".
      character_coverage: fraction of the corpus's characters that get pieces
        of their own; the rarest rest are spelled in byte pieces.
      num_threads: trainer threads.

    Returns:
      SentencePieceTokenizer.

    Raises:
      SentencePieceTrainingError: no lines, an unknown model_type, or a vocab_size
        the corpus cannot support (too small for its characters, or more pieces
        than it has).
    """
    if model_type not in MODEL_TYPES:
        raise SentencePieceTrainingError(
            f"model_type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}.")
    sentences = [line for line in lines if line]
    if not sentences:
        raise SentencePieceTrainingError("cannot train SentencePiece on an empty corpus.")
    model = io.BytesIO()
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
            model_type=model_type, character_coverage=character_coverage,
            num_threads=num_threads, **_TRAINER_OPTIONS)
    except RuntimeError as error:
        raise _training_error(str(error), vocab_size, model_type) from error
    return SentencePieceTokenizer(model.getvalue())
