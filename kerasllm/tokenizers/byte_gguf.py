"""Byte-level BPE tokenizers read from a GGUF file's metadata (llama.cpp's format).

A GGUF model file carries its tokenizer as `tokenizer.ggml.*` keys: the model
kind ("gpt2" for byte-level BPE), the pre-tokenizer name (see
byte_pretokenizer.PRETOKENIZERS), the tokens (id = index), their types, the
merges ("left right", best first), the bos/eos/padding ids and whether a bos is
added. Tokens of type CONTROL or USER_DEFINED ("<|im_start|>", ...) are matched
whole in the text, as Hugging Face's added tokens are.
"""
from gguf import GGUFReader

from kerasllm.tokenizers.byte_bpe import ByteLevelBpeTokenizer
from kerasllm.tokenizers.byte_vocab import BpeVocabError

# llama.cpp's names (tokenizer.ggml.pre) of the pre-tokenizers implemented here
# (see byte_pretokenizer), each checked against llama.cpp's reference token ids.
GGUF_PRETOKENIZERS = {"gpt-2": "gpt2", "smollm": "smollm", "starcoder": "smollm",
                      "refact": "smollm"}

# llama.cpp's token types (gguf.TokenType): 3 = CONTROL, 4 = USER_DEFINED.
_MATCHED_WHOLE_TYPES = (3, 4)


_REQUIRED = object()


def _field(reader, key, path, default=_REQUIRED):
    """The value of metadata `key`; `default` when absent, if one is given."""
    field = reader.fields.get(key)
    if field is not None:
        return field.contents()
    if default is _REQUIRED:
        raise BpeVocabError(f"{path} has no {key} in its metadata; is it a GGUF file with a "
                            "tokenizer?")
    return default


def byte_bpe_from_gguf(path, **kwargs):
    """The ByteLevelBpeTokenizer stored in the metadata of the GGUF file at `path`.

    Keyword arguments override the settings read from the file (pretokenizer,
    special_tokens, bos_id, eos_id, pad_id). bos_id is the file's bos only if it
    says a bos is added (tokenizer.ggml.add_bos_token; absent means no).

    Raises:
      BpeVocabError: the file cannot be read, has no tokenizer, or one that is not
        byte-level BPE or uses a pre-tokenizer this module does not implement.
    """
    try:
        reader = GGUFReader(path)
    except (OSError, ValueError) as error:
        raise BpeVocabError(f"Cannot read the GGUF file {path!r}: {error}.") from error
    model = _field(reader, "tokenizer.ggml.model", path)
    if model != "gpt2":
        raise BpeVocabError(f"{path} holds a {model!r} tokenizer, not byte-level BPE (\"gpt2\").")
    pretokenizer = _field(reader, "tokenizer.ggml.pre", path, default="gpt-2")
    if pretokenizer not in GGUF_PRETOKENIZERS and "pretokenizer" not in kwargs:
        raise BpeVocabError(f"{path} uses the pre-tokenizer {pretokenizer!r}; implemented: "
                            f"{', '.join(GGUF_PRETOKENIZERS)}.")
    tokens = _field(reader, "tokenizer.ggml.tokens", path)
    types = _field(reader, "tokenizer.ggml.token_type", path)
    merges = [tuple(merge.split(" ")) for merge in _field(reader, "tokenizer.ggml.merges", path)]
    settings = {
        "pretokenizer": GGUF_PRETOKENIZERS.get(pretokenizer),
        "special_tokens": [token for token, kind in zip(tokens, types)
                           if kind in _MATCHED_WHOLE_TYPES],
        "eos_id": _field(reader, "tokenizer.ggml.eos_token_id", path, default=None),
        "pad_id": _field(reader, "tokenizer.ggml.padding_token_id", path, default=None),
    }
    if _field(reader, "tokenizer.ggml.add_bos_token", path, default=False):
        settings["bos_id"] = _field(reader, "tokenizer.ggml.bos_token_id", path)
    settings.update(kwargs)
    return ByteLevelBpeTokenizer(tokens, merges, **settings)
