"""The interface every kerasllm tokenizer implements.

A tokenizer is a `tf.Module` made only of TensorFlow / tensorflow-text ops, so the
same object tokenizes training data in `tf.data` and is tracked into a SavedModel
whose signatures take raw text. Data pipelines, signatures and model directories
use only what is declared here, never a family's special tokens by name.
"""
import hashlib
import os
import tempfile

import tensorflow as tf


class Tokenizer(tf.Module):
    """Text <-> token ids, usable inside tf.function and SavedModels.

    `kind` names the implementation (e.g. "wordpiece"); `settings()` and `save`
    record what `kerasllm.tokenizers.load_tokenizer` needs to rebuild it.
    """

    kind = None
    # File names `save` writes; a directory holding them can be loaded back.
    files = ()

    @property
    def vocab_size(self):
        raise NotImplementedError

    @property
    def pad_id(self):
        """The id of padding, which models never attend to."""
        raise NotImplementedError

    def special_ids(self):
        """{special token: id}, e.g. {"[CLS]": 2, ...}."""
        raise NotImplementedError

    def tokenize(self, text):
        """string [batch] -> int32 RaggedTensor [batch, (tokens)]; "" gives no tokens."""
        raise NotImplementedError

    def detokenize(self, ids):
        """int ids [batch, tokens] (dense or ragged) -> string [batch]; padding dropped."""
        raise NotImplementedError

    def id_to_token(self, ids):
        """int ids (dense or ragged, any shape) -> tf.string tokens of the same shape."""
        raise NotImplementedError

    def token_texts(self, ids):
        """int ids (dense, any shape) -> tf.string of the same shape: the text each
        token adds to a detokenized text, for showing tokens one by one (e.g. beside
        their log-probabilities). Defaults to `id_to_token`."""
        return self.id_to_token(ids)

    def pack(self, segments, max_seq_length):
        """Token segments ([batch, (tokens)] each, as `tokenize` returns them) ->
        the dense model-input dict of this tokenizer's family, every tensor
        [batch, max_seq_length] (at least token_ids and padding_mask); longer input
        is truncated."""
        raise NotImplementedError

    def settings(self):
        """JSON-able {"kind": ..., setting: value} that, with the files `save`
        writes, rebuilds this tokenizer."""
        raise NotImplementedError

    def save(self, directory):
        """Writes the tokenizer's files (its vocabulary, ...) into `directory`,
        each atomically; returns settings()."""
        raise NotImplementedError

    @classmethod
    def load(cls, directory, settings):
        """The tokenizer that `save(directory)` wrote with these settings."""
        raise NotImplementedError

    def fingerprint(self):
        """The sha256 of its settings and the files `save` writes: tokenizers with the
        same fingerprint give the same ids (an export records it, so an operator can
        tell which vocabulary a version reads)."""
        digest = hashlib.sha256()
        with tempfile.TemporaryDirectory() as directory:
            digest.update(repr(sorted(self.save(directory).items())).encode())
            for name in sorted(os.listdir(directory)):
                with open(os.path.join(directory, name), "rb") as f:
                    digest.update(name.encode() + b"\0" + f.read())
        return digest.hexdigest()
