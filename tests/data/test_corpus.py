import pytest

from kerasllm.data.corpus import read_documents, split_documents
from kerasllm.data.errors import CorpusError
from kerasllm.errors import DataError


def test_reads_documents_separated_by_blank_lines_and_files(tmp_path):
    (tmp_path / "a.txt").write_bytes(
        "\ufeffFirst line.\r\n  Second line.  \r\n\r\n\r\nNew document.\r\n".encode("utf-8"))
    (tmp_path / "b.txt").write_text("Only one.\n", encoding="utf-8")
    documents = read_documents(str(tmp_path / "*.txt"))
    assert documents == [["First line.", "Second line."], ["New document."], ["Only one."]]
    assert read_documents([tmp_path / "b.txt"]) == [["Only one."]]


def test_missing_glob_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing-*.txt")
    with pytest.raises(CorpusError, match="nothing-"):
        read_documents(pattern)


def test_empty_corpus_is_an_error(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no text"):
        read_documents(str(tmp_path / "*.txt"))


def test_unreadable_file_is_a_corpus_error(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(CorpusError, match="UTF-8"):
        read_documents(str(tmp_path / "latin1.txt"))
    with pytest.raises(CorpusError):
        read_documents([str(tmp_path / "missing.txt")])
    assert issubclass(CorpusError, DataError) and issubclass(DataError, ValueError)


def test_split_documents_is_disjoint_and_seeded():
    documents = [[f"doc {i}"] for i in range(10)]
    train, evaluation = split_documents(documents, eval_fraction=0.2, seed=3)
    assert len(train) == 8 and len(evaluation) == 2
    assert sorted(train + evaluation) == sorted(documents)
    assert split_documents(documents, 0.2, seed=3) == (train, evaluation)
    with pytest.raises(CorpusError):
        split_documents(documents[:1], 0.5)


def test_document_per_file_joins_blank_line_blocks(tmp_path):
    (tmp_path / "play.txt").write_text("Ham.\nTo be.\n\nHor.\nMy lord.\n")
    (tmp_path / "other.txt").write_text("One line.\n")
    pattern = str(tmp_path / "*.txt")
    assert len(read_documents(pattern)) == 3
    assert read_documents(pattern, document_per_file=True) == [
        ["One line."], ["Ham.", "To be.", "Hor.", "My lord."]]
