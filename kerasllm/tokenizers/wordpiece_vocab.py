"""WordPiece vocabularies: learn one from a corpus, save it, load and validate it.

A vocabulary file has one token per line; the line number is the token id.
This is the `vocab.txt` format of the original BERT checkpoints.
"""

import tensorflow as tf
from tensorflow_text.tools.wordpiece_vocab import bert_vocab_from_dataset as vocab_learning

from kerasllm.atomic_files import write_atomically
from kerasllm.errors import DataError

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
RESERVED_TOKENS = (PAD, UNK, CLS, SEP, MASK)
VOCAB_FILE = "vocab.txt"


class VocabError(DataError):
    """A WordPiece vocabulary file is missing, malformed or lacks special tokens."""


# The learner binary-searches a count threshold and re-runs itself per step;
# its defaults (4 refinement passes, words seen >= 10 times) take ~30 s on the
# 5 MB Shakespeare corpus and stop short of 8k tokens. One pass and a threshold
# of 1 take ~7 s and reach the requested size.
_LEARN_PARAMS = {"num_iterations": 1, "lower_thresh": 1}


def learn_wordpiece_vocab(documents, vocab_size, lowercase=True):
    """Learns a WordPiece vocabulary of at most `vocab_size` tokens.

    Args:
      documents: list of documents, each a list of text lines.
      vocab_size: maximum number of tokens, reserved tokens included.
      lowercase: lower-case and strip accents before counting words; must match
        the `lowercase` of the WordPieceTokenizer that will use the vocabulary.

    Returns:
      list of tokens: [PAD], [UNK], [CLS], [SEP], [MASK] (ids 0-4), then the
      learned words and "##"-prefixed word pieces.
    """
    lines = [line for document in documents for line in document]
    if not lines:
        raise VocabError("Cannot learn a vocabulary from an empty corpus.")
    if vocab_size <= len(RESERVED_TOKENS):
        raise VocabError(
            f"vocab_size={vocab_size} leaves no room beyond the {len(RESERVED_TOKENS)} "
            "reserved tokens; use a few thousand.")
    dataset = tf.data.Dataset.from_tensor_slices(lines).batch(4096)
    vocab = vocab_learning.bert_vocab_from_dataset(
        dataset, vocab_size=vocab_size, reserved_tokens=list(RESERVED_TOKENS),
        bert_tokenizer_params={"lower_case": lowercase}, learn_params=_LEARN_PARAMS)
    return list(vocab)


def save_vocab(vocab, path):
    """Writes one token per line, atomically (a reader never sees a partial file)."""
    write_atomically(path, "".join(token + "\n" for token in vocab))


def validate_vocab(vocab, source="vocabulary"):
    """Raises VocabError unless `vocab` is a usable WordPiece vocabulary."""
    if not vocab:
        raise VocabError(f"The {source} is empty; a vocabulary has one token per line.")
    for line_number, token in enumerate(vocab, start=1):
        if not token or token != token.strip() or any(c.isspace() for c in token):
            raise VocabError(
                f"Line {line_number} of the {source} is {token!r}: tokens must be non-empty "
                "and contain no whitespace. Is this really a WordPiece vocab.txt "
                "(one token per line)?")
        if not token.isprintable():
            raise VocabError(
                f"Line {line_number} of the {source} contains control characters "
                f"({token!r}); this does not look like a vocabulary file.")
    seen = set()
    for token in vocab:
        if token in seen:
            raise VocabError(f"The {source} lists {token!r} more than once; token ids "
                             "must be unique, remove the duplicate line.")
        seen.add(token)
    missing = [token for token in RESERVED_TOKENS if token not in seen]
    if missing:
        raise VocabError(
            f"The {source} lacks the special token(s) {', '.join(missing)}; BERT needs "
            f"all of {', '.join(RESERVED_TOKENS)}. Add them (learn_wordpiece_vocab puts "
            "them first).")


def load_vocab(path):
    """Reads and validates a vocab.txt (one token per line, id = line number).

    Raises:
      VocabError: the file is missing, not UTF-8 text, empty, has duplicate or
        whitespace-containing entries, or lacks [PAD]/[UNK]/[CLS]/[SEP]/[MASK].
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as error:
        raise VocabError(f"Cannot read vocabulary file {path!r}: {error}.") from error
    if b"\0" in raw:
        raise VocabError(f"{path!r} is a binary file, not a vocab.txt of one token per line.")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise VocabError(f"{path!r} is not UTF-8 text ({error}); is it really a vocab.txt?") \
            from error
    # Exactly one trailing newline is normal; anything else is a real (empty) entry.
    vocab = text.split("\n")
    if vocab and vocab[-1] == "":
        vocab.pop()
    vocab = [token[:-1] if token.endswith("\r") else token for token in vocab]
    validate_vocab(vocab, source=f"vocabulary file {path!r}")
    return vocab
