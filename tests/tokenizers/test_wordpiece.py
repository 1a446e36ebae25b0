import keras
import keras_hub
import pytest
import tensorflow as tf

from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from kerasllm.tokenizers.wordpiece_vocab import VocabError, save_vocab

# A hand-made uncased vocabulary in BERT's layout ([PAD] 0, [unusedN], then the
# special tokens), big enough to exercise punctuation, accents, CJK and numbers.
VOCAB = (
    ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    + ["the", "of", "denmark", "king", "queen", "hello", "world", "un", "##aff", "##able",
       "cafe", "naive", "resume", "a", "is", "s", "t", "don", "it", "3", "14", "##15", "100",
       "1", "000", "42", "##nd", "to", "be", "or", "not", "e", "mail", "com", "东", "京", "日",
       "本", "strasse", "##s", "ss", "ok", "and", "numbers", "play", "##ing", "##ed", "i",
       "istanbul", "tm", "##a", "##b", "##c"]
)

SENTENCES = [
    "Hello, World!",
    "To be, or not to be: that is the question?",
    "Café naïve résumé — the Queen's cafe.",
    "东京 is in 日本。",
    "Numbers: 3.1415, 1,000 and 42nd!",
    "don't / it's \"ok\" (playing) [played]",
    "e-mail@com #1 $100 ^_^ `ok` ~tm~",
    "STRASSE Straße İstanbul ÀÉÎ",
    "unaffable kings unknownword",
    "  tabs\tand\nnewlines   ",
    "",
    "a" * 120 + " ok",
]


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer(VOCAB)


def keras_hub_ids(vocab, sentences, **kwargs):
    reference = keras_hub.tokenizers.BertTokenizer(vocabulary=vocab, lowercase=True, **kwargs)
    return [[int(i) for i in row] for row in reference(tf.constant(sentences))]


@pytest.mark.parametrize("strip_accents", [True, False])
def test_ids_match_keras_hub_bert_tokenizer(strip_accents):
    ours = WordPieceTokenizer(VOCAB, strip_accents=strip_accents)
    ids = ours.tokenize(tf.constant(SENTENCES)).to_list()
    assert ids == keras_hub_ids(VOCAB, SENTENCES, strip_accents=strip_accents)
    assert sum(len(row) for row in ids) > 100


def test_ids_match_keras_hub_on_the_real_bert_vocab(real_bert_vocab_file):
    ours = WordPieceTokenizer.from_vocab_file(real_bert_vocab_file)
    ids = ours.tokenize(tf.constant(SENTENCES)).to_list()
    assert ids == keras_hub_ids(real_bert_vocab_file, SENTENCES, strip_accents=True)
    assert ours.tokenize(tf.constant(["The [MASK] of Denmark."])).to_list() == [
        [1996, 103, 1997, 5842, 1012]]


def test_properties(tokenizer):
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.cls_id, tokenizer.sep_id,
            tokenizer.mask_id) == (0, 3, 4, 5, 6)
    assert tokenizer.vocab_size == len(VOCAB) and tokenizer.vocabulary == VOCAB


def test_special_tokens_in_text_map_to_their_ids(tokenizer):
    ids = tokenizer.tokenize(tf.constant(["The [MASK] of Denmark", "[CLS]king[SEP][PAD] [UNK]",
                                          "[mask] stays text"]))
    word = VOCAB.index
    assert ids.to_list()[:2] == [
        [word("the"), 6, word("of"), word("denmark")],
        [4, word("king"), 5, 0, 3],
    ]
    assert 6 not in ids.to_list()[2]  # only the exact spelling is special


def test_tokenize_words_keeps_word_structure(tokenizer):
    words = tokenizer.tokenize_words(tf.constant(["unaffable king", ""]))
    assert words.to_list() == [[[VOCAB.index(p) for p in ["un", "##aff", "##able"]],
                                [VOCAB.index("king")]], []]


def test_graph_mode_and_empty_strings(tokenizer):
    tokenize = tf.function(tokenizer.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    ids = tokenize(tf.constant(["", "hello world", ""]))
    assert isinstance(ids, tf.RaggedTensor) and ids.dtype == tf.int32
    assert ids.row_lengths().numpy().tolist() == [0, 2, 0]
    assert tokenize(tf.constant([], tf.string)).nrows() == 0


def test_detokenize_and_id_to_token(tokenizer):
    ids = tokenizer.tokenize(tf.constant(["Unaffable, the KING!", "[MASK] queen"]))
    padded = ids.to_tensor()  # second row gets [PAD]s
    assert tokenizer.detokenize(padded).numpy().tolist() == [
        b"unaffable , the king !", b"[MASK] queen"]
    tokens = tokenizer.id_to_token(padded)
    assert tokens.shape == padded.shape
    assert tokens.numpy()[1].tolist() == [b"[MASK]", b"queen"] + [b"[PAD]"] * 5
    assert tokenizer.id_to_token(tf.constant([10_000])).numpy().tolist() == [b"[UNK]"]


def test_rejects_bad_vocabularies_and_inputs(tmp_path):
    with pytest.raises(VocabError, match=r"\[MASK\]"):
        WordPieceTokenizer([t for t in VOCAB if t != "[MASK]"])
    with pytest.raises(ValueError, match="1-D"):
        WordPieceTokenizer(VOCAB).tokenize("a single string")
    path = tmp_path / "vocab.txt"
    save_vocab(VOCAB, path)
    assert WordPieceTokenizer.from_vocab_file(path, lowercase=False).lowercase is False


def test_exports_into_a_saved_model(tokenizer, tmp_path):
    archive = keras.export.ExportArchive()
    archive.track(tokenizer)
    archive.add_endpoint(
        "tokenize", lambda text: {"ids": tokenizer.tokenize(text).to_tensor(),
                                  "text": tokenizer.detokenize(tokenizer.tokenize(text))},
        input_signature=[tf.TensorSpec([None], tf.string)])
    archive.write_out(str(tmp_path / "model"), verbose=False)
    restored = tf.saved_model.load(str(tmp_path / "model"))
    outputs = restored.tokenize(tf.constant(["the [MASK] of Denmark", ""]))
    assert outputs["ids"].numpy().tolist() == [
        [VOCAB.index("the"), 6, VOCAB.index("of"), VOCAB.index("denmark")], [0, 0, 0, 0]]
    assert outputs["text"].numpy().tolist() == [b"the [MASK] of denmark", b""]


def test_fingerprint_follows_the_vocabulary_and_settings():
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]
    same = WordPieceTokenizer(vocab).fingerprint()
    assert same == WordPieceTokenizer(list(vocab)).fingerprint() and len(same) == 64
    assert same != WordPieceTokenizer(vocab + ["c"]).fingerprint()
    assert same != WordPieceTokenizer(vocab, lowercase=False).fingerprint()
