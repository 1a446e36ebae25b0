import os

import pytest

from kerasllm.tokenizers.wordpiece_vocab import VocabError
from kerasllm.tokenizers.wordpiece_vocab import RESERVED_TOKENS, learn_wordpiece_vocab, load_vocab, save_vocab


def bert_style_vocab():
    """The layout of the original uncased BERT vocab.txt, in miniature."""
    return (["[PAD]"] + [f"[unused{i}]" for i in range(3)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            + ["!", "the", "king", "##s", "的"])


def test_learned_vocab_starts_with_reserved_tokens():
    documents = [["The king is dead.", "Long live the king!"],
                 ["Kings and queens, queens and kings."]] * 20
    vocab = learn_wordpiece_vocab(documents, vocab_size=200)
    assert tuple(vocab[:5]) == RESERVED_TOKENS
    assert vocab[0] == "[PAD]"
    assert "king" in vocab and len(vocab) <= 200 and len(set(vocab)) == len(vocab)


def test_save_then_load_round_trip(tmp_path):
    path = tmp_path / "sub" / "vocab.txt"
    save_vocab(bert_style_vocab(), path)
    assert load_vocab(path) == bert_style_vocab()
    assert os.listdir(path.parent) == ["vocab.txt"]  # no temporary file left behind


def test_loads_crlf_files(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_bytes("\r\n".join(bert_style_vocab()).encode("utf-8"))
    assert load_vocab(path) == bert_style_vocab()


def test_loads_the_real_uncased_bert_vocab(real_bert_vocab_file):
    vocab = load_vocab(real_bert_vocab_file)
    assert len(vocab) == 30522 and vocab[100:104] == ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.mark.parametrize("content, message", [
    (None, "Cannot read"),
    (b"", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
    ("\n".join(bert_style_vocab() + ["the"]).encode(), "more than once"),
    ("\n".join(t for t in bert_style_vocab() if t != "[MASK]").encode(), r"\[MASK\]"),
    ("\n".join(bert_style_vocab() + ["king\t42"]).encode(), "whitespace"),
    ("\n".join(bert_style_vocab() + ["two words"]).encode(), "whitespace"),
    ("\n".join(bert_style_vocab()[:5] + ["", "x"]).encode(), "non-empty"),
])
def test_bad_vocab_files_raise_vocab_error(tmp_path, content, message):
    path = tmp_path / "vocab.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VocabError, match=message):
        load_vocab(path)
