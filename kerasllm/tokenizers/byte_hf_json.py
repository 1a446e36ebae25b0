"""Byte-level BPE tokenizers read from a Hugging Face `tokenizer.json`.

Most Hugging Face model directories ship their tokenizer as one tokenizer.json
(the `tokenizers` package's serialization) and no vocab.json/merges.txt; SmolLM2's
does. The file holds the BPE model (vocab {token: id}, merges best first, as
"left right" strings or [left, right] pairs), the added tokens (matched whole in
the text, as "<|im_start|>"), and the pipeline around the model. Only the two
pipelines implemented in byte_pretokenizer are accepted, anything else is named
in the error rather than tokenized differently from the reference:

  ByteLevel(use_regex=True, add_prefix_space=False)                  -> "gpt2"
  Sequence[Digits(individual_digits=True), ByteLevel(same settings)] -> "smollm"
with no normalizer.

bos/eos and the chat template are not in tokenizer.json but in the
tokenizer_config.json beside it (bos_token, eos_token, pad_token, add_bos_token,
chat_template), read when present.

`tokenizer_json` is the way back: the file of a ByteLevelBpeTokenizer, which both
this reader and Hugging Face's `tokenizers` read to the same ids.
"""
import json
import os

from kerasllm.tokenizers.byte_bpe import ByteLevelBpeTokenizer
from kerasllm.tokenizers.byte_vocab import BpeVocabError

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as error:
        raise BpeVocabError(f"{path} does not exist") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BpeVocabError(f"Cannot read {path} as JSON: {error}") from error


_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
               "use_regex": True}
_PRETOKENIZER_SPECS = {
    "gpt2": _BYTE_LEVEL,
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, _BYTE_LEVEL]},
}


def _byte_level_ok(step):
    return (step.get("type") == "ByteLevel" and step.get("use_regex", True)
            and not step.get("add_prefix_space", False))


def _pretokenizer(spec, path):
    """Our pre-tokenizer kind for tokenizer.json's "pre_tokenizer" entry."""
    steps = spec.get("pretokenizers", []) if spec and spec.get("type") == "Sequence" else [spec]
    if len(steps) == 1 and steps[0] and _byte_level_ok(steps[0]):
        return "gpt2"
    if (len(steps) == 2 and steps[0].get("type") == "Digits"
            and steps[0].get("individual_digits") and _byte_level_ok(steps[1])):
        return "smollm"
    raise BpeVocabError(f"{path}: pre_tokenizer {json.dumps(spec)} is not one this tokenizer "
                        "implements (GPT-2's ByteLevel, or Digits(individual_digits) then "
                        "ByteLevel)")


def _token_text(value):
    """tokenizer_config.json gives a token as a string or as {"content": ...}."""
    return value.get("content") if isinstance(value, dict) else value


def tokenizer_config(directory):
    """tokenizer_config.json of `directory` as a dict ({} when there is none)."""
    path = os.path.join(directory, TOKENIZER_CONFIG_FILE)
    return _read_json(path) if os.path.isfile(path) else {}


def byte_bpe_from_tokenizer_json(directory, **kwargs):
    """The ByteLevelBpeTokenizer of a Hugging Face directory's tokenizer.json.

    Keyword arguments override the settings read from the files.

    Raises:
      BpeVocabError: the file is missing or unreadable, is not byte-level BPE, uses
        a normalizer or pre-tokenizer not implemented here, or its ids are not
        0 .. n-1.
    """
    path = os.path.join(directory, TOKENIZER_FILE)
    spec = _read_json(path)
    model = spec.get("model") or {}
    if model.get("type") != "BPE":
        raise BpeVocabError(f"{path} holds a {model.get('type')!r} model, not byte-level BPE")
    for setting in ("ignore_merges", "byte_fallback"):
        if model.get(setting):
            raise BpeVocabError(f"{path}: the BPE setting {setting} is not implemented")
    if spec.get("normalizer"):
        raise BpeVocabError(f"{path}: normalizer {spec['normalizer'].get('type')!r} is not "
                            "implemented; byte-level BPE tokenizers have none")
    pretokenizer = _pretokenizer(spec.get("pre_tokenizer"), path)

    token_of_id = {index: token for token, index in model.get("vocab", {}).items()}
    added = spec.get("added_tokens", [])
    token_of_id.update((entry["id"], entry["content"]) for entry in added)
    if sorted(token_of_id) != list(range(len(token_of_id))):
        raise BpeVocabError(f"{path}: the token ids are not 0 .. {len(token_of_id) - 1}")
    vocabulary = [token_of_id[index] for index in range(len(token_of_id))]
    merges = [tuple(merge.split(" ", 1)) if isinstance(merge, str) else tuple(merge)
              for merge in model.get("merges", [])]

    config = tokenizer_config(directory)
    token_id = {token: index for index, token in enumerate(vocabulary)}

    def config_id(key):
        token = _token_text(config.get(key))
        return token_id.get(token) if token is not None else None

    settings = {"pretokenizer": pretokenizer,
                "special_tokens": [entry["content"] for entry in added],
                "eos_id": config_id("eos_token"), "pad_id": config_id("pad_token")}
    if config.get("add_bos_token"):
        settings["bos_id"] = config_id("bos_token")
    settings.update(kwargs)
    return ByteLevelBpeTokenizer(vocabulary, merges, **settings)


def tokenizer_json(tokenizer):
    """The tokenizer.json dict of a ByteLevelBpeTokenizer: its BPE model, special
    tokens as added tokens, its pre-tokenizer, and a post-processor that puts its
    bos first when it has one."""
    vocabulary = tokenizer.vocabulary
    special = tokenizer.special_ids()
    if tokenizer.bos_id is None:
        post_processor = {"type": "ByteLevel", "add_prefix_space": True,
                          "trim_offsets": False, "use_regex": True}
    else:
        bos = vocabulary[tokenizer.bos_id]
        post_processor = {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": bos, "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": bos, "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {bos: {"id": bos, "ids": [tokenizer.bos_id], "tokens": [bos]}}}
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": index, "content": token, "single_word": False,
                          "lstrip": False, "rstrip": False, "normalized": False,
                          "special": True} for token, index in sorted(special.items(),
                                                                      key=lambda t: t[1])],
        "normalizer": None,
        "pre_tokenizer": _PRETOKENIZER_SPECS[tokenizer.settings()["pretokenizer"]],
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {token: index for index, token in enumerate(vocabulary)},
                  "merges": [list(merge) for merge in tokenizer.merges]},
    }
