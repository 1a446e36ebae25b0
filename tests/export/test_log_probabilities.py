"""Log-probabilities in GPT's and seq2seq's signatures (what an OpenAI-style `logprobs` request
returns): each generated token's and each scored token's equal the model's own
log-softmax from one forward pass over the whole text, whatever shaped the draw; the
alternatives are its most likely tokens; `describe` tells a client the chat template."""
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.data.chat_template import ChatTemplate
from kerasllm.export.gpt_signatures import MAX_TOP_LOGPROBS, gpt_signatures
from kerasllm.export.seq2seq_signatures import seq2seq_signatures
from kerasllm.models import GptCausalLM, Seq2SeqLM
from kerasllm.tokenizers import train_sentencepiece

PROMPTS = ["the king is dead", "long live the queen", "the"]
NEW_TOKENS = 5


@pytest.fixture(scope="module")
def pieces():
    return train_sentencepiece(["the king is dead, long live the queen"] * 50, vocab_size=278)


@pytest.fixture(scope="module")
def model(pieces):
    return GptCausalLM.from_name("gpt_tiny", vocab_size=pieces.vocab_size,
                                 num_layers=1).build_for_inputs()


@pytest.fixture(scope="module")
def signatures(model, pieces):
    return gpt_signatures(model, pieces, max_prompt_length=32, max_new_tokens=NEW_TOKENS,
                          num_beams=2, chat_template=ChatTemplate.for_model(None, pieces))


def log_softmax_of(model, token_ids):
    """float64 [len(token_ids) - 1, V]: log p(next | tokens so far) at each position."""
    ids = tf.constant([token_ids], tf.int32)
    logits = model({"token_ids": ids, "padding_mask": tf.ones_like(ids)})["logits"][0]
    return tf.nn.log_softmax(tf.cast(logits, tf.float64)).numpy()[:-1]


def settings(**changes):
    values = {"max_new_tokens": [5, 3, 5], "temperature": [0.0, 1.3, 0.9],
              "top_k": [0, 4, 0], "top_p": [1.0, 1.0, 0.8], "seed": [1, 2, 3],
              "stop": ["", "", ""], **changes}
    return {name: tf.constant(value) for name, value in values.items()}


def test_generated_tokens_log_probs_and_alternatives_are_the_models_own(model, pieces,
                                                                         signatures):
    out = signatures["generate_with_logprobs"](
        tf.constant(PROMPTS), **settings(), top_logprobs=tf.constant([3, 0, 25]))
    out = {name: value.numpy() for name, value in out.items()}
    for row, prompt in enumerate(PROMPTS):
        prompt_ids = [pieces.bos_id, *pieces.tokenize(tf.constant([prompt]))[0].numpy()]
        assert out["prompt_num_tokens"][row] == len(prompt_ids)
        length = int(np.sum(out["tokens"][row] != b""))
        assert length == min(NEW_TOKENS, [5, 3, 5][row])
        generated = list(out["token_ids"][row, :length])
        expected = log_softmax_of(model, prompt_ids + generated)[len(prompt_ids) - 1:]
        np.testing.assert_allclose(out["token_log_probs"][row, :length],
                                   expected[np.arange(length), generated], atol=1e-4)
        assert np.all(out["token_log_probs"][row, length:] == 0)
        wanted = min([3, 0, 25][row], MAX_TOP_LOGPROBS)
        for t in range(length):
            best = np.argsort(-expected[t], kind="stable")[:wanted]
            np.testing.assert_allclose(out["top_log_probs"][row, t, :wanted],
                                       expected[t, best], atol=1e-4)
            np.testing.assert_array_equal(
                np.sort(out["top_token_ids"][row, t, :wanted]), np.sort(best))
            assert np.all(out["top_token_ids"][row, t, wanted:] == -1)
            assert np.all(out["top_tokens"][row, t, wanted:] == b"")
        np.testing.assert_array_equal(
            out["tokens"][row, :length],
            pieces.token_texts(tf.constant(generated)).numpy())
    # generate_with_options returns the same tokens and log-probabilities.
    plain = signatures["generate_with_options"](tf.constant(PROMPTS), **settings())
    np.testing.assert_array_equal(plain["token_ids"], out["token_ids"])
    np.testing.assert_allclose(plain["token_log_probs"], out["token_log_probs"], atol=1e-6)


def test_score_gives_each_tokens_log_prob(model, pieces, signatures):
    out = {k: v.numpy() for k, v in signatures["score"](tf.constant(PROMPTS)).items()}
    for row, text in enumerate(PROMPTS):
        ids = list(pieces.tokenize(tf.constant([text]))[0].numpy())
        assert out["text_lengths"][row] == len(ids) == out["num_tokens"][row]
        expected = log_softmax_of(model, [pieces.bos_id, *ids])[np.arange(len(ids)), ids]
        np.testing.assert_allclose(out["token_log_probs"][row, :len(ids)], expected,
                                   atol=1e-4)
        np.testing.assert_allclose(out["log_probability"][row], expected.sum(), atol=1e-4)
        assert b"".join(out["tokens"][row]).decode().strip() == text
        best = np.argmax(log_softmax_of(model, [pieces.bos_id, *ids]), axis=1)[:len(ids)]
        np.testing.assert_array_equal(out["top_token_ids"][row, :len(ids), 0], best)
        np.testing.assert_allclose(out["top_log_probs"][row, :len(ids), 0],
                                   log_softmax_of(model, [pieces.bos_id, *ids]).max(axis=1),
                                   atol=1e-4)
        assert np.all(out["tokens"][row, len(ids):] == b"")


def test_describe_tells_the_chat_template_and_limits(pieces, signatures):
    fields = ["chat_template", "max_new_tokens", "max_prompt_length", "eos_token", "nonsense"]
    described = signatures["describe"](tf.constant(fields))
    template = ChatTemplate.for_model(None, pieces)
    assert [v.decode() for v in described["value"].numpy()] == [
        template.source, str(NEW_TOKENS), "32", template.eos_token, ""]
    assert described["known"].numpy().tolist() == [True] * 4 + [False]


def test_python_generate_returns_the_same_log_probs(model, pieces, signatures):
    model.tokenizer = pieces
    details = model.generate(PROMPTS, max_new_tokens=NEW_TOKENS, top_logprobs=2,
                             return_details=True, jit_compile=False)
    served = signatures["generate_with_logprobs"](
        tf.constant(PROMPTS), **settings(max_new_tokens=[NEW_TOKENS] * 3,
                                         temperature=[0.0] * 3, top_k=[0] * 3,
                                         top_p=[1.0] * 3, seed=[0] * 3),
        top_logprobs=tf.constant([2] * 3))
    np.testing.assert_allclose(np.asarray(details["token_log_probs"]),
                               served["token_log_probs"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(details["top_token_ids"]),
                                  served["top_token_ids"].numpy())


def test_a_translations_token_log_probs_sum_to_its_beam_score(pieces):
    model = Seq2SeqLM.from_name("seq2seq_tiny", vocab_size=pieces.vocab_size,
                                num_encoder_layers=1, num_decoder_layers=1).build_for_inputs()
    translate = seq2seq_signatures(model, pieces, max_source_length=16, max_target_length=6,
                                   max_beam_size=2)["translate_with_options"]
    out = translate(tf.constant(PROMPTS + [""]), beam_size=tf.constant([2, 1, 2, 2]),
                    length_penalty=tf.constant([0.0] * 4), max_length=tf.constant([6] * 4))
    # (an untrained model's </s>, a token whose text is "", may come first)
    lengths = np.sum(out["token_log_probs"].numpy() != 0, axis=1)
    assert lengths[-1] == 0 and np.all(lengths[:-1] > 0)
    assert np.all(out["tokens"].numpy()[-1] == b"")
    # With no length penalty a beam's score is its log-probability, summed step by step
    # in the search; the tokens' own come from one teacher-forced pass.
    np.testing.assert_allclose(out["token_log_probs"].numpy().sum(axis=1),
                               out["score"].numpy(), atol=1e-4)
    for row in range(3):
        assert np.all(out["token_log_probs"].numpy()[row, lengths[row]:] == 0)
