"""Plain-text corpora: files of sentences, blank lines between documents.

This is the layout BERT pretraining expects: every file is at least one
document, a blank line starts a new document, and each non-blank line is one
segment ("sentence") that next-sentence prediction may split pairs at.
"""
import glob
import os

import numpy as np

from kerasllm.data.errors import CorpusError


def _resolve_paths(pattern_or_paths):
    if isinstance(pattern_or_paths, (str, os.PathLike)):
        pattern = os.fspath(pattern_or_paths)
        paths = sorted(glob.glob(os.path.expanduser(pattern)))
        if not paths:
            raise CorpusError(
                f"No files match the corpus pattern {pattern!r}; check the path "
                "or pass a list of existing text files.")
        return paths, pattern
    paths = [os.fspath(path) for path in pattern_or_paths]
    if not paths:
        raise CorpusError("The list of corpus files is empty; pass at least one text file.")
    return paths, ", ".join(paths)


def _documents_in_text(text):
    """Splits one file's text into documents (lists of stripped, non-empty lines)."""
    documents, current = [], []
    # splitlines() handles \r\n and lone \r as well as \n.
    for line in text.splitlines():
        line = line.strip()
        if line:
            current.append(line)
        elif current:
            documents.append(current)
            current = []
    if current:
        documents.append(current)
    return documents


def read_documents(pattern_or_paths, document_per_file=False):
    """Reads UTF-8 text files into documents.

    Args:
      pattern_or_paths: a glob pattern (str) or a list of file paths.
      document_per_file: each file is one document and blank lines are only
        line breaks (plays, books); otherwise blank lines separate documents.

    Returns:
      list of documents; each document is a list of non-empty, stripped lines.
      Every file contributes at least one document (if it has any text), and
      blank lines inside a file separate documents.

    Raises:
      CorpusError: the pattern matches nothing, a file cannot be read or is not
        UTF-8, or no file contains any text.
    """
    paths, description = _resolve_paths(pattern_or_paths)
    documents = []
    for path in paths:
        try:
            # utf-8-sig drops a byte-order mark that some editors write.
            with open(path, encoding="utf-8-sig") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as error:
            raise CorpusError(
                f"Cannot read corpus file {path!r} (from {description!r}): {error}. "
                "Corpus files must be readable UTF-8 text.") from error
        file_documents = _documents_in_text(text)
        if document_per_file and file_documents:
            file_documents = [[line for document in file_documents for line in document]]
        documents.extend(file_documents)
    if not documents:
        raise CorpusError(
            f"The corpus {description!r} contains no text (only empty or blank files).")
    return documents


def split_documents(documents, eval_fraction, seed=0):
    """Shuffles documents and splits them into (train, eval) lists.

    At least one document goes to each side, so both are usable on their own.

    Raises:
      CorpusError: fewer than two documents, or eval_fraction not in (0, 1).
    """
    if not 0.0 < eval_fraction < 1.0:
        raise CorpusError(f"eval_fraction must be between 0 and 1, got {eval_fraction}.")
    if len(documents) < 2:
        raise CorpusError(
            f"Cannot split {len(documents)} document(s) into train and eval; "
            "the corpus needs at least two documents (separate them with blank lines).")
    order = np.random.default_rng(seed).permutation(len(documents))
    num_eval = min(max(1, round(eval_fraction * len(documents))), len(documents) - 1)
    eval_documents = [documents[i] for i in order[:num_eval]]
    train_documents = [documents[i] for i in order[num_eval:]]
    return train_documents, eval_documents
