"""Tokenizers, and chat templates, in a GGUF file's metadata (llama.cpp's format; the
file is read by kerasllm.convert.gguf_file): read into kerasllm tokenizers, and
written from them (`add_tokenizer`, for gguf_export).

A GGUF model file carries its tokenizer as `tokenizer.ggml.*` keys: the model
kind, the tokens (id = index), their types, the bos/eos/padding ids and whether a
bos is added, and a chat model's Jinja template as `tokenizer.chat_template`.
  * "gpt2", byte-level BPE: the pre-tokenizer name (see
    kerasllm.tokenizers.byte_pretokenizer.PRETOKENIZERS) and the merges ("left
    right", best first). Tokens of type CONTROL or USER_DEFINED ("<|im_start|>",
    ...) are matched whole in the text, as Hugging Face's added tokens are.
  * "llama", SentencePiece: each piece's score and type (NORMAL, CONTROL, BYTE, ...),
    and whether a space is put before the text (add_space_prefix). The file does not
    say whether the scores are a unigram model's log-probabilities or a BPE model's
    merge ranks; llama.cpp merges by score, as SentencePiece's BPE does, so a file
    read here is BPE unless its `kerasllm.sentencepiece.model_type` key (which
    kerasllm writes) says unigram.
"""
from gguf import TokenType
from sentencepiece import sentencepiece_model_pb2

from kerasllm.convert.errors import ConversionError
from kerasllm.convert.gguf_file import GgufFile
from kerasllm.tokenizers import ByteLevelBpeTokenizer, SentencePieceTokenizer

# llama.cpp's names (tokenizer.ggml.pre) of the pre-tokenizers implemented here
# (see byte_pretokenizer), each checked against llama.cpp's reference token ids.
GGUF_PRETOKENIZERS = {"gpt-2": "gpt2", "smollm": "smollm", "starcoder": "smollm",
                      "refact": "smollm"}
CHAT_TEMPLATE = "tokenizer.chat_template"
SENTENCEPIECE_MODEL_TYPE = "kerasllm.sentencepiece.model_type"

# llama.cpp's token types (gguf.TokenType): 3 = CONTROL, 4 = USER_DEFINED.
_MATCHED_WHOLE_TYPES = (3, 4)


def _required(gguf, key):
    if key not in gguf:
        raise ConversionError(f"{gguf.path} has no {key} in its metadata; is it a GGUF file "
                              "with a tokenizer?")
    return gguf.value(key)


def byte_bpe_from_gguf(source, **kwargs):
    """The ByteLevelBpeTokenizer stored in the metadata of a GGUF file.

    Args:
      source: the .gguf file, or a GgufFile already open.
      **kwargs: override the settings read from the file (pretokenizer,
        special_tokens, bos_id, eos_id, pad_id). bos_id is the file's bos only if
        it says a bos is added (tokenizer.ggml.add_bos_token; absent means no).

    Raises:
      ConversionError: the file is not a complete GGUF file, has no tokenizer, or
        one that is not byte-level BPE or uses a pre-tokenizer this module does not
        implement.
      kerasllm.tokenizers.byte_vocab.BpeVocabError: the vocabulary or merges are
        inconsistent.
    """
    gguf = GgufFile.of(source)
    model = _required(gguf, "tokenizer.ggml.model")
    if model != "gpt2":
        raise ConversionError(f"{gguf.path} holds a {model!r} tokenizer, not byte-level BPE "
                              "(\"gpt2\").")
    pretokenizer = gguf.value("tokenizer.ggml.pre", "gpt-2")
    if pretokenizer not in GGUF_PRETOKENIZERS and "pretokenizer" not in kwargs:
        raise ConversionError(f"{gguf.path} uses the pre-tokenizer {pretokenizer!r}; "
                              f"implemented: {', '.join(GGUF_PRETOKENIZERS)}.")
    tokens = _required(gguf, "tokenizer.ggml.tokens")
    types = _required(gguf, "tokenizer.ggml.token_type")
    merges = [tuple(merge.split(" ")) for merge in _required(gguf, "tokenizer.ggml.merges")]
    settings = {
        "pretokenizer": GGUF_PRETOKENIZERS.get(pretokenizer),
        "special_tokens": [token for token, kind in zip(tokens, types)
                           if kind in _MATCHED_WHOLE_TYPES],
        "eos_id": gguf.value("tokenizer.ggml.eos_token_id"),
        "pad_id": gguf.value("tokenizer.ggml.padding_token_id"),
    }
    if gguf.value("tokenizer.ggml.add_bos_token", False):
        settings["bos_id"] = _required(gguf, "tokenizer.ggml.bos_token_id")
    settings.update(kwargs)
    return ByteLevelBpeTokenizer(tokens, merges, **settings)


def _proto(model_proto):
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_proto)
    return proto


def sentencepiece_from_gguf(source):
    """The SentencePieceTokenizer stored in the metadata of a GGUF file ("llama"
    tokenizer model), its proto rebuilt from the pieces, scores and types.

    Raises:
      ConversionError: the file has no SentencePiece tokenizer.
      kerasllm.tokenizers.sentencepiece.SentencePieceModelError: the rebuilt model
        is unusable (no <s> or </s>).
    """
    gguf = GgufFile.of(source)
    model = _required(gguf, "tokenizer.ggml.model")
    if model != "llama":
        raise ConversionError(f"{gguf.path} holds a {model!r} tokenizer, not SentencePiece "
                              "(\"llama\").")
    tokens = _required(gguf, "tokenizer.ggml.tokens")
    scores = _required(gguf, "tokenizer.ggml.scores")
    types = _required(gguf, "tokenizer.ggml.token_type")
    proto = sentencepiece_model_pb2.ModelProto()
    for token, score, kind in zip(tokens, scores, types, strict=True):
        # GGUF's token types are SentencePiece's piece types, number for number.
        proto.pieces.add(piece=token, score=float(score), type=int(kind))
    spec = proto.trainer_spec
    model_type = gguf.value(SENTENCEPIECE_MODEL_TYPE, "bpe")
    spec.model_type = {"unigram": spec.UNIGRAM, "bpe": spec.BPE}[model_type]
    spec.vocab_size = len(tokens)
    spec.byte_fallback = TokenType.BYTE in types
    for key, field in (("unknown_token_id", "unk_id"), ("bos_token_id", "bos_id"),
                       ("eos_token_id", "eos_id")):
        setattr(spec, field, int(gguf.value("tokenizer.ggml." + key, -1)))
    pad_id = int(gguf.value("tokenizer.ggml.padding_token_id", -1))
    # SentencePiece gives each special id one role; files often pad with eos or unk.
    spec.pad_id = pad_id if pad_id not in (spec.unk_id, spec.bos_id, spec.eos_id) else -1
    normalizer = proto.normalizer_spec
    normalizer.name = "identity"
    normalizer.add_dummy_prefix = bool(gguf.value("tokenizer.ggml.add_space_prefix", True))
    normalizer.remove_extra_whitespaces = bool(
        gguf.value("tokenizer.ggml.remove_extra_whitespaces", False))
    normalizer.escape_whitespaces = True
    return SentencePieceTokenizer(proto.SerializeToString())


def tokenizer_from_gguf(source):
    """The tokenizer in a GGUF file's metadata: byte-level BPE ("gpt2") or
    SentencePiece ("llama").

    Raises:
      ConversionError: no tokenizer, or one of another kind.
    """
    gguf = GgufFile.of(source)
    model = _required(gguf, "tokenizer.ggml.model")
    if model == "llama":
        return sentencepiece_from_gguf(gguf)
    if model != "gpt2":
        raise ConversionError(f"{gguf.path} holds a {model!r} tokenizer; kerasllm reads "
                              "byte-level BPE (\"gpt2\") and SentencePiece (\"llama\").")
    return byte_bpe_from_gguf(gguf)


def _padded(tokens, types, vocab_size):
    """The token list grown to the model's vocab_size with unused placeholder tokens
    (llama.cpp wants one token per embedding row)."""
    if len(tokens) > vocab_size:
        raise ConversionError(f"the tokenizer has {len(tokens)} tokens but the model only "
                              f"{vocab_size} embedding rows")
    extra = vocab_size - len(tokens)
    return (tokens + [f"<unused_{i}>" for i in range(extra)],
            types + [TokenType.UNUSED] * extra)


def add_tokenizer(writer, tokenizer, vocab_size):
    """Writes `tokenizer` (byte-level BPE or SentencePiece) as tokenizer.ggml.* keys of
    a GGUFWriter, for a model of `vocab_size` embedding rows.

    Raises:
      ConversionError: a tokenizer of another kind, or more tokens than rows.
    """
    if isinstance(tokenizer, ByteLevelBpeTokenizer):
        special = set(tokenizer.special_ids().values())
        tokens = tokenizer.vocabulary
        types = [TokenType.CONTROL if i in special else TokenType.NORMAL
                 for i in range(len(tokens))]
        pretokenizer = {ours: name for name, ours in GGUF_PRETOKENIZERS.items()}
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pretokenizer[tokenizer.settings()["pretokenizer"]])
        writer.add_token_merges([f"{left} {right}" for left, right in tokenizer.merges])
    elif isinstance(tokenizer, SentencePieceTokenizer):
        proto = _proto(tokenizer.model_proto)
        tokens = [piece.piece for piece in proto.pieces]
        types = [piece.type for piece in proto.pieces]
        writer.add_tokenizer_model("llama")
        writer.add_token_scores([piece.score for piece in proto.pieces]
                                + [0.0] * (vocab_size - len(tokens)))
        writer.add_add_space_prefix(proto.normalizer_spec.add_dummy_prefix)
        writer.add_remove_extra_whitespaces(proto.normalizer_spec.remove_extra_whitespaces)
        writer.add_string(SENTENCEPIECE_MODEL_TYPE, "unigram" if proto.trainer_spec.model_type
                          == proto.trainer_spec.UNIGRAM else "bpe")
        writer.add_unk_token_id(tokenizer.unk_id)
    else:
        raise ConversionError(f"a {tokenizer.kind} tokenizer cannot go into a GGUF file; "
                              "byte-level BPE and SentencePiece can")
    tokens, types = _padded(tokens, types, vocab_size)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    if tokenizer.bos_id is not None:
        writer.add_bos_token_id(tokenizer.bos_id)
    if tokenizer.eos_id is not None:
        writer.add_eos_token_id(tokenizer.eos_id)
    writer.add_pad_token_id(tokenizer.pad_id)
    writer.add_add_bos_token(tokenizer.bos_id is not None)
    writer.add_add_eos_token(False)


def chat_template(source):
    """The Jinja chat template a GGUF file (a path or an open GgufFile) carries, or None."""
    return GgufFile.of(source).value(CHAT_TEMPLATE)
