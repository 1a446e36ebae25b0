"""SentencePiece in TF ops: the same ids as the sentencepiece package, exact round trips,
LM packing, model files, and the same results in tf.function, a SavedModel and TF Serving."""
import os

import keras
import pytest
import sentencepiece
import tensorflow as tf

from kerasllm.data.corpus import read_documents
from kerasllm.datasets.sentencepiece_test_models import (MODEL_NAMES, sentencepiece_test_folder,
                                                         sentencepiece_test_model_file)
from kerasllm.datasets.shakespeare import default_corpus_files
from kerasllm.errors import DataError
from kerasllm.tokenizers import load_tokenizer
from kerasllm.tokenizers.sentencepiece import (MODEL_FILE, SentencePieceModelError,
                                               SentencePieceTokenizer,
                                               SentencePieceTrainingError, train_sentencepiece)
from tests.fresh_process import serve_in_fresh_process

VOCAB_SIZE = 800

# Text the training slice of Hamlet does not prepare a tokenizer for.
EDGE_TEXTS = [
    "To be, or not to be: that is the question.",
    "Café naïve résumé — ÀÉÎ Straße İstanbul",
    "3.1415 and 1,000,000 in 2024",
    "东京は日本の首都です。",
    "😀👍🏽 emoji 🇩🇪 flags",
    "  leading, trailing   and   runs of spaces  ",
    "tabs\tand\nnewlines\r\nand\n\n\nblank lines",
    "",
    " ",
    "ﬁ ligature, ＡＢＣ full-width",
    "<s> </s> <pad> <unk> typed as text",
    "zero\u200bwidth, nul\x00byte",
]


def _lines(work, count):
    path = next(p for p in default_corpus_files() if os.path.basename(p) == f"{work}_gut.txt")
    return [line for document in read_documents([path], document_per_file=True)
            for line in document][:count]


@pytest.fixture(scope="module")
def training_lines():
    return _lines("hamlet", 1500)


@pytest.fixture(scope="module")
def held_out_texts():
    """Macbeth as the LM sees it: lines joined with newlines, in chunks of 20 lines."""
    lines = _lines("macbeth", 400)
    return ["\n".join(lines[i:i + 20]) for i in range(0, len(lines), 20)]


@pytest.fixture(scope="module", params=["unigram", "bpe"])
def tokenizer(request, training_lines):
    return train_sentencepiece(training_lines, vocab_size=VOCAB_SIZE, model_type=request.param)


def reference(tokenizer):
    return sentencepiece.SentencePieceProcessor(model_proto=tokenizer.model_proto)


def test_ids_match_the_sentencepiece_package(tokenizer, held_out_texts):
    texts = held_out_texts + EDGE_TEXTS
    ids = tokenizer.tokenize(tf.constant(texts))
    assert ids.dtype == tf.int32
    assert ids.to_list() == reference(tokenizer).encode(texts)
    # Byte fallback: characters the vocabulary lacks are spelled in bytes, never <unk>.
    assert tokenizer.unk_id not in ids.flat_values.numpy()
    assert ids.row_lengths().numpy()[len(held_out_texts) + EDGE_TEXTS.index("")] == 0


def test_detokenize_inverts_tokenize(tokenizer, held_out_texts):
    texts = held_out_texts + EDGE_TEXTS
    restored = tokenizer.detokenize(tokenizer.tokenize(tf.constant(texts)))
    assert [text.decode("utf-8") for text in restored.numpy()] == texts


def test_round_trip_exceptions(tokenizer):
    # Invalid UTF-8 comes back with U+FFFD; SentencePiece's space marker as a space.
    texts = tf.constant([b"ab\xffcd", "a\u2581b".encode()])
    assert tokenizer.detokenize(tokenizer.tokenize(texts)).numpy().tolist() == [
        "ab\ufffdcd".encode(), b"a b"]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_pretrained_models_give_the_sentencepiece_package_ids(name):
    path = sentencepiece_test_model_file(name)
    tokenizer = SentencePieceTokenizer.from_file(path)
    processor = sentencepiece.SentencePieceProcessor(model_file=path)
    with open(os.path.join(sentencepiece_test_folder(), "botchan.txt"), encoding="utf-8") as f:
        texts = [line.rstrip("\n") for line, _ in zip(f, range(300))] + EDGE_TEXTS
    ids = tokenizer.tokenize(tf.constant(texts))
    assert ids.to_list() == processor.encode(texts)
    # These models normalize (NFKC, whitespace runs), so decoding is compared with
    # the package's decoding rather than with the text.
    assert tokenizer.detokenize(ids).numpy().tolist() == [
        text.encode() for text in processor.decode(ids.to_list())]
    # <unk> 0, <s> 1, </s> 2 and no pad piece: padding uses </s>.
    assert tokenizer.special_ids() == {"<unk>": 0, "<s>": 1, "</s>": 2}
    assert (tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (0, 1, 2, 2)
    assert tokenizer.vocab_size == processor.get_piece_size()


def test_trained_model_layout(tokenizer):
    assert tokenizer.vocab_size == VOCAB_SIZE
    assert tokenizer.special_ids() == {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id) == (0, 1, 2, 3)
    assert tokenizer.id_to_token(tf.constant([4, 4 + 0x0A, 259])).numpy().tolist() == [
        b"<0x00>", b"<0x0A>", b"<0xFF>"]
    pieces = tokenizer.id_to_token(tokenizer.tokenize(tf.constant(["line one\nline two"])))
    assert b"<0x0A>" in pieces.flat_values.numpy()  # a newline is one byte piece


def test_digits_are_split(training_lines):
    years = [f"in the year {1600 + i % 3} and {1700 + i % 5}" for i in range(200)]
    tokenizer = train_sentencepiece(years + training_lines[:100], vocab_size=400)
    pieces = tokenizer.id_to_token(tokenizer.tokenize(tf.constant(["the year 1601"])))
    assert pieces.flat_values.numpy().tolist()[-4:] == [b"1", b"6", b"0", b"1"]


def test_training_is_deterministic_in_memory(training_lines, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = train_sentencepiece(training_lines[:300], vocab_size=500)
    assert train_sentencepiece(training_lines[:300], vocab_size=500).model_proto == \
        first.model_proto
    assert os.listdir(tmp_path) == []  # the trainer wrote nothing to the working directory


def test_training_errors(training_lines):
    with pytest.raises(SentencePieceTrainingError, match="empty corpus"):
        train_sentencepiece(["", ""], vocab_size=500)
    with pytest.raises(SentencePieceTrainingError, match=r"more than this corpus supports.*"
                                                         r"at most \d+"):
        train_sentencepiece(training_lines[:50], vocab_size=5000)
    with pytest.raises(SentencePieceTrainingError, match=r"use at least \d+"):
        train_sentencepiece(training_lines[:50], vocab_size=100)
    with pytest.raises(SentencePieceTrainingError, match="model_type"):
        train_sentencepiece(training_lines, vocab_size=500, model_type="word")


def test_detokenize_drops_padding_and_specials(tokenizer):
    ids = tokenizer.tokenize(tf.constant(["To be, or not", "", "the question"]))
    packed = tokenizer.pack([ids], 16)["token_ids"]  # <s> ... then <pad>s
    assert tokenizer.detokenize(packed).numpy().tolist() == [b"To be, or not", b"",
                                                              b"the question"]
    with_eos = tf.concat([ids, tf.fill([3, 1], tokenizer.eos_id)], axis=1)
    assert tokenizer.detokenize(with_eos).numpy().tolist()[0] == b"To be, or not"
    # <unk> and ids outside the vocabulary read as " ⁇ " (never crash the op).
    unknown = tokenizer.detokenize(tf.constant([[1, VOCAB_SIZE, -1]], tf.int64))
    assert unknown.numpy().tolist() == [" ⁇ ".encode() * 3]
    tokens = tokenizer.id_to_token(packed)
    assert tokens.shape == packed.shape and tokens.numpy()[1].tolist()[:2] == [b"<s>", b"<pad>"]
    assert tokenizer.id_to_token(tf.constant([VOCAB_SIZE, -5])).numpy().tolist() == [
        b"<unk>", b"<unk>"]


def test_pack_one_segment(tokenizer):
    ids = tf.ragged.constant([[10, 11, 12], [], list(range(10, 30))], tf.int32)
    packed = tokenizer.pack([ids], 8)
    assert set(packed) == {"token_ids", "padding_mask"}
    assert packed["token_ids"].dtype == tf.int32 and packed["token_ids"].shape == (3, 8)
    assert packed["token_ids"].numpy().tolist() == [
        [2, 10, 11, 12, 0, 0, 0, 0],
        [2, 0, 0, 0, 0, 0, 0, 0],
        [2, 10, 11, 12, 13, 14, 15, 16],  # truncated at the end
    ]
    assert packed["padding_mask"].numpy().tolist() == [[1] * 4 + [0] * 4, [1] + [0] * 7, [1] * 8]


def test_pack_segments_joined_by_eos(tokenizer):
    a = tf.ragged.constant([[10, 11], [10] * 9, [10]], tf.int32)
    b = tf.ragged.constant([[20], [20] * 9, []], tf.int32)
    packed = tokenizer.pack([a, b], 8)
    assert packed["token_ids"].numpy().tolist() == [
        [2, 10, 11, 3, 20, 0, 0, 0],
        [2, 10, 10, 10, 3, 20, 20, 20],  # trimmed round-robin: each keeps a share
        [2, 10, 3, 0, 0, 0, 0, 0],  # an empty last segment still follows a </s>
    ]
    with pytest.raises(DataError, match="at least 3"):
        tokenizer.pack([a, b], 2)
    with pytest.raises(DataError, match="at least one segment"):
        tokenizer.pack([], 8)


def test_save_and_load(tokenizer, tmp_path):
    settings = tokenizer.save(str(tmp_path / "model"))
    assert settings == {"kind": "sentencepiece"}
    assert os.listdir(tmp_path / "model") == [MODEL_FILE]  # no temporary file left
    restored = load_tokenizer(str(tmp_path / "model"), settings)
    assert isinstance(restored, SentencePieceTokenizer)
    assert restored.model_proto == tokenizer.model_proto
    text = tf.constant(EDGE_TEXTS)
    assert restored.tokenize(text).to_list() == tokenizer.tokenize(text).to_list()


def test_bad_model_files_are_named(tokenizer, tmp_path):
    with pytest.raises(SentencePieceModelError, match="cannot read SentencePiece model file"):
        load_tokenizer(str(tmp_path), {"kind": "sentencepiece"})
    corrupt = tmp_path / "corrupt.model"
    for content in [b"not a model", tokenizer.model_proto[:len(tokenizer.model_proto) // 2],
                    b""]:
        corrupt.write_bytes(content)
        with pytest.raises(SentencePieceModelError, match="corrupt.model.*not a SentencePiece"):
            SentencePieceTokenizer.from_file(corrupt)
    writer = sentencepiece.SentencePieceTrainer
    without_bos = tmp_path / "without_bos.model"
    with open(without_bos, "wb") as f:
        writer.train(sentence_iterator=iter(["to be or not to be"] * 10), model_writer=f,
                     vocab_size=20, bos_id=-1, minloglevel=2, hard_vocab_limit=False)
    with pytest.raises(SentencePieceModelError, match="no <s>"):
        SentencePieceTokenizer.from_file(without_bos)
    with pytest.raises(ValueError, match="1-D"):
        tokenizer.tokenize("a single string")


def test_graph_saved_model_and_serving_agree(training_lines, tmp_path):
    tokenizer = train_sentencepiece(training_lines, vocab_size=VOCAB_SIZE)
    texts = EDGE_TEXTS + ["word " * 100]

    def serve(text):
        ids = tokenizer.tokenize(text)
        return {**tokenizer.pack([ids], 32), "text": tokenizer.detokenize(ids)}

    signature = [tf.TensorSpec([None], tf.string, name="text")]
    eager = serve(tf.constant(texts))
    traced = tf.function(serve, input_signature=signature)(tf.constant(texts))
    archive = keras.export.ExportArchive()
    archive.track(tokenizer)
    archive.add_endpoint("tokenize", serve, input_signature=signature)
    path = str(tmp_path / "model")
    archive.write_out(path, verbose=False)
    del tokenizer  # the SavedModel must not need the Python object
    restored = tf.saved_model.load(path).tokenize(tf.constant(texts))
    served = serve_in_fresh_process(path, {"text": texts}, str(tmp_path))
    assert eager["text"].numpy().tolist() == [t.encode() for t in texts]
    for name in ["token_ids", "padding_mask", "text"]:
        expected = eager[name].numpy().tolist()
        assert traced[name].numpy().tolist() == expected
        assert restored[name].numpy().tolist() == expected
        assert served[f"tokenize/{name}"].tolist() == expected
        assert served[f"serving_default/{name}"].tolist() == expected
