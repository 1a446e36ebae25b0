"""GPT's and seq2seq's serving signatures on bad requests, in process on tiny untrained
models: inputs whose rows disagree are an InvalidArgument naming both (in every
signature with several inputs, BERT's too), and a NaN setting is the documented 0 of
its range (an infinite length penalty its bound) rather than an empty text scored -inf."""
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.export.bert_signatures import bert_signatures
from kerasllm.export.gpt_signatures import gpt_signatures
from kerasllm.export.seq2seq_signatures import seq2seq_signatures
from kerasllm.models import BertEncoder, GptCausalLM, Seq2SeqLM, registry
from kerasllm.tokenizers import WordPieceTokenizer, train_sentencepiece

NAN = float("nan")
PROMPTS = ["the king is dead", "long live the queen", "the king is dead"]


@pytest.fixture(scope="module")
def pieces():
    return train_sentencepiece(["the king is dead, long live the queen"] * 50, vocab_size=278)


@pytest.fixture(scope="module")
def gpt(pieces):
    model = GptCausalLM.from_name("gpt_tiny", vocab_size=pieces.vocab_size,
                                  num_layers=1).build_for_inputs()
    return gpt_signatures(model, pieces, max_prompt_length=8, max_new_tokens=4, num_beams=2)


@pytest.fixture(scope="module")
def seq2seq(pieces):
    model = Seq2SeqLM.from_name("seq2seq_tiny", vocab_size=pieces.vocab_size,
                                num_encoder_layers=1, num_decoder_layers=1).build_for_inputs()
    return seq2seq_signatures(model, pieces, max_source_length=8, max_target_length=5,
                              max_beam_size=2)


def options(rows, **changes):
    settings = {"max_new_tokens": [4] * rows, "temperature": [0.0] * rows, "top_k": [0] * rows,
                "top_p": [1.0] * rows, "seed": [0] * rows, "stop": [""] * rows}
    return {name: tf.constant(value) for name, value in {**settings, **changes}.items()}


def rows_disagree(call, first, other):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=f"{first} and {other} must have the same number of rows"):
        call()


def test_gpt_settings_of_other_rows_than_the_prompts(gpt):
    prompts = tf.constant(PROMPTS)
    for name in ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop"):
        rows_disagree(lambda: gpt["generate_with_options"](
            prompts, **options(3, **{name: options(2)[name]})), "prompt", name)
    rows_disagree(lambda: gpt["generate_beam"](prompts, tf.constant([0.6, 0.6])),
                  "prompt", "length_penalty")


def test_seq2seq_inputs_of_other_rows(seq2seq):
    texts = tf.constant(PROMPTS)
    settings = {"beam_size": [2] * 3, "length_penalty": [0.6] * 3, "max_length": [0] * 3}
    for name in settings:
        short = {key: tf.constant(value[:2] if key == name else value)
                 for key, value in settings.items()}
        rows_disagree(lambda: seq2seq["translate_with_options"](texts, **short), "text", name)
    rows_disagree(lambda: seq2seq["score"](texts, tf.constant(PROMPTS[:2])), "source", "target")


def test_bert_pairs_of_other_rows():
    tokenizer = WordPieceTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the"])
    config = registry.get("bert_tiny").replace(vocab_size=6, max_sequence_length=8, num_layers=1)
    signatures = bert_signatures(BertEncoder(config).build_for_inputs(), tokenizer, 8)
    rows_disagree(lambda: signatures["encode_pair"](tf.constant(["the"] * 3),
                                                    tf.constant(["the"] * 2)), "text", "text_b")


def test_gpt_nan_settings_read_as_zero(gpt):
    prompts = tf.constant(PROMPTS[:2])
    beams = gpt["generate_beam"](prompts, tf.constant([NAN, 0.0]))
    none = gpt["generate_beam"](prompts, tf.constant([0.0, 0.0]))
    np.testing.assert_array_equal(beams["texts"].numpy(), none["texts"].numpy())
    np.testing.assert_allclose(beams["scores"].numpy(), none["scores"].numpy())
    assert np.all(np.isfinite(beams["scores"].numpy()))
    # Infinite alphas are clipped to the range where scores still rank hypotheses.
    infinite = gpt["generate_beam"](prompts, tf.constant([float("inf"), -float("inf")]))
    bounds = gpt["generate_beam"](prompts, tf.constant([10.0, -10.0]))
    np.testing.assert_allclose(infinite["scores"].numpy(), bounds["scores"].numpy())
    assert np.all(np.isfinite(infinite["scores"].numpy()) & (infinite["scores"].numpy() < 0))
    nan = gpt["generate_with_options"](prompts, **options(2, temperature=[NAN, 0.0],
                                                          top_p=[NAN, 1.0]))
    greedy = gpt["generate"](prompts)
    np.testing.assert_array_equal(nan["token_ids"].numpy(), greedy["token_ids"].numpy())


def test_seq2seq_nan_length_penalty_reads_as_zero(seq2seq):
    texts = tf.constant(PROMPTS[:2])

    def translate(alpha):
        return seq2seq["translate_with_options"](
            texts, tf.constant([2, 2]), tf.constant(alpha), tf.constant([0, 0]))

    nan, zero = translate([NAN, NAN]), translate([0.0, 0.0])
    np.testing.assert_array_equal(nan["translations"].numpy(), zero["translations"].numpy())
    np.testing.assert_allclose(nan["scores"].numpy(), zero["scores"].numpy())
    assert np.all(np.isfinite(nan["score"].numpy()))
