"""Byte-level BPE vocabularies: GPT-2's byte alphabet, and the vocab.json and
merges.txt files that hold a vocabulary and its ranked merges.

A byte-level BPE token is a string over an alphabet of 256 printable characters,
one per byte value, so a token can hold any bytes (a space is "Ġ", a newline "Ċ").
vocab.json maps token -> id (GPT-2's encoder.json is such a file); merges.txt has
an optional "#version" line, then one merge "left right" per line, best first
(GPT-2's vocab.bpe is such a file). The line number gives the merge's rank.
"""
import json

from kerasllm.atomic_files import write_atomically
from kerasllm.errors import DataError

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
_MERGES_HEADER = "#version: 0.2"


class BpeVocabError(DataError):
    """A byte-level BPE vocabulary or merges list is missing, malformed or inconsistent."""


def byte_alphabet():
    """The 256 characters that stand for the bytes 0..255 in a token (GPT-2's table).

    Printable Latin-1 characters other than the space stand for their own byte;
    the other 68 bytes (controls, space, DEL, NBSP, soft hyphen) take the
    characters U+0100, U+0101, ... in byte order, so none is whitespace or
    invisible and a token never needs escaping.
    """
    printable = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    alphabet, borrowed = [], 0
    for byte in range(256):
        if byte in printable:
            alphabet.append(chr(byte))
        else:
            alphabet.append(chr(0x100 + borrowed))
            borrowed += 1
    return alphabet


def tokens_to_bytes(tokens):
    """The bytes each token stands for, a list of `bytes`. A token with a character
    outside the byte alphabet (an added token such as "<｜tool｜>"; "<|im_start|>" is
    inside it) stands for its own UTF-8 text, as Hugging Face's ByteLevel decoder
    treats it."""
    byte_of = {char: byte for byte, char in enumerate(byte_alphabet())}
    return [bytes(byte_of[char] for char in token)
            if all(char in byte_of for char in token) else token.encode("utf-8")
            for token in tokens]


def validate_vocab(vocabulary, merges, special_tokens, source="vocabulary"):
    """Raises BpeVocabError unless the tokens are unique and every merge and
    special token refers to tokens of the vocabulary.

    Args:
      vocabulary: list of tokens, id = index.
      merges: list of (left, right) pairs, best first; left + right must be a token.
      special_tokens: tokens matched whole in the text.
    """
    if not vocabulary:
        raise BpeVocabError(f"The {source} is empty.")
    index = {}
    for token_id, token in enumerate(vocabulary):
        if not isinstance(token, str) or not token:
            raise BpeVocabError(f"Token {token_id} of the {source} is {token!r}; tokens must "
                                "be non-empty strings.")
        if token in index:
            raise BpeVocabError(f"The {source} lists {token!r} twice (ids {index[token]} and "
                                f"{token_id}); token ids must be unique.")
        index[token] = token_id
    for rank, merge in enumerate(merges):
        if len(merge) != 2 or not all(isinstance(part, str) and part for part in merge):
            raise BpeVocabError(f"Merge {rank} of the {source} is {merge!r}, not a pair of "
                                "non-empty tokens.")
        missing = [token for token in (merge[0], merge[1], merge[0] + merge[1])
                   if token not in index]
        if missing:
            raise BpeVocabError(f"Merge {rank} ({merge[0]} {merge[1]}) of the {source} needs "
                                f"{', '.join(map(repr, missing))}, which the vocabulary lacks; "
                                "are the vocabulary and merges from the same tokenizer?")
    missing = [token for token in special_tokens if token not in index]
    if missing:
        raise BpeVocabError(f"Special token(s) {', '.join(map(repr, missing))} are not in the "
                            f"{source}.")


def _read_text(path, what):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise BpeVocabError(f"Cannot read the {what} {path!r}: {error}.") from error
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise BpeVocabError(f"The {what} {path!r} is not UTF-8 text ({error}).") from error


def load_vocab_json(path):
    """Reads a vocab.json / encoder.json {token: id} into a list of tokens (id = index).

    Raises:
      BpeVocabError: unreadable, not a JSON object of integer ids, or ids that are
        not exactly 0..n-1.
    """
    try:
        mapping = json.loads(_read_text(path, "vocabulary file"))
    except json.JSONDecodeError as error:
        raise BpeVocabError(f"{path!r} is not JSON ({error}); expected {{token: id}}.") \
            from error
    if not isinstance(mapping, dict) or not all(
            isinstance(token_id, int) and not isinstance(token_id, bool)
            for token_id in mapping.values()):
        raise BpeVocabError(f"{path!r} is not a JSON object {{token: integer id}}.")
    vocabulary = [None] * len(mapping)
    for token, token_id in mapping.items():
        if not 0 <= token_id < len(mapping) or vocabulary[token_id] is not None:
            raise BpeVocabError(f"{path!r} gives {token!r} the id {token_id}; the ids of its "
                                f"{len(mapping)} tokens must be 0..{len(mapping) - 1}, each once.")
        vocabulary[token_id] = token
    return vocabulary


def load_merges(path):
    """Reads a merges.txt / vocab.bpe into a list of (left, right) pairs, best first.

    Raises:
      BpeVocabError: unreadable, or a line that is not two tokens separated by one space.
    """
    lines = _read_text(path, "merges file").split("\n")
    merges = []
    for line_number, line in enumerate(lines, start=1):
        line = line.rstrip("\r")
        if not line or (line_number == 1 and line.startswith("#version")):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise BpeVocabError(f"Line {line_number} of {path!r} is {line!r}; a merges file "
                                "has one merge \"left right\" per line.")
        merges.append(tuple(parts))
    return merges


def save_vocab_json(vocabulary, path):
    """Writes {token: id} as JSON, atomically (a reader never sees a partial file)."""
    write_atomically(path, json.dumps({token: token_id for token_id, token
                                        in enumerate(vocabulary)}, ensure_ascii=False))


def save_merges(merges, path):
    """Writes the "#version" line and one "left right" merge per line, atomically."""
    write_atomically(path, "".join([_MERGES_HEADER + "\n"] +
                                    [f"{left} {right}\n" for left, right in merges]))
