"""Tokenizers made of TensorFlow ops (see `base.Tokenizer`): the same object prepares
training data and goes into the exported SavedModel. WordPiece (`wordpiece`, its
vocabulary learned by `wordpiece_vocab`), SentencePiece (`sentencepiece`) and
byte-level BPE (`byte_bpe`, read from GPT-2's files or a `tokenizer.json` by
`byte_hf_json`); model inputs packed as BERT's "[CLS] a [SEP] b [SEP]"
(`segment_packing`) or a decoder-only LM's "<s> a </s> b" (`lm_packing`). Tokenizers
import nothing from the data, model or export packages.

    tokenizer = load_tokenizer(directory, settings)   # as a model directory records it
"""
from kerasllm.errors import DataError
from kerasllm.tokenizers.base import Tokenizer
from kerasllm.tokenizers.byte_bpe import ByteLevelBpeTokenizer
from kerasllm.tokenizers.sentencepiece import SentencePieceTokenizer, train_sentencepiece
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer

KINDS = {tokenizer.kind: tokenizer
         for tokenizer in (ByteLevelBpeTokenizer, SentencePieceTokenizer, WordPieceTokenizer)}


def load_tokenizer(directory, settings):
    """The tokenizer whose files are in `directory`, as `Tokenizer.save` wrote them
    and returned `settings` ({"kind": ..., ...})."""
    kind = settings.get("kind")
    if kind not in KINDS:
        raise DataError(f"unknown tokenizer kind {kind!r} for {directory}; known kinds: "
                        f"{', '.join(sorted(KINDS))}")
    return KINDS[kind].load(directory, settings)


__all__ = ["KINDS", "ByteLevelBpeTokenizer", "SentencePieceTokenizer", "Tokenizer",
           "WordPieceTokenizer", "load_tokenizer", "train_sentencepiece"]
