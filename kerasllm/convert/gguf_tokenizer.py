"""Byte-level BPE tokenizers, and chat templates, read from a GGUF file's metadata
(llama.cpp's format; the file is read by kerasllm.convert.gguf_file).

A GGUF model file carries its tokenizer as `tokenizer.ggml.*` keys: the model
kind ("gpt2" for byte-level BPE), the pre-tokenizer name (see
kerasllm.tokenizers.byte_pretokenizer.PRETOKENIZERS), the tokens (id = index),
their types, the merges ("left right", best first), the bos/eos/padding ids and
whether a bos is added. Tokens of type CONTROL or USER_DEFINED ("<|im_start|>",
...) are matched whole in the text, as Hugging Face's added tokens are. A chat
model's Jinja template is `tokenizer.chat_template`.
"""
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.gguf_file import GgufFile
from kerasllm.tokenizers.byte_bpe import ByteLevelBpeTokenizer

# llama.cpp's names (tokenizer.ggml.pre) of the pre-tokenizers implemented here
# (see byte_pretokenizer), each checked against llama.cpp's reference token ids.
GGUF_PRETOKENIZERS = {"gpt-2": "gpt2", "smollm": "smollm", "starcoder": "smollm",
                      "refact": "smollm"}
CHAT_TEMPLATE = "tokenizer.chat_template"

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


def chat_template(source):
    """The Jinja chat template a GGUF file (a path or an open GgufFile) carries, or None."""
    return GgufFile.of(source).value(CHAT_TEMPLATE)
