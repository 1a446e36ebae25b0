"""The OpenAI-compatible gateway (kerasllm.serving.gateway) with the official `openai`
client, over real HTTP, in front of the development server (kerasllm.serving.dev_server)
running real tiny exports (a GPT, a seq2seq, a BERT encoder).

Tests of what newer exports return (token log-probabilities: generate_with_logprobs,
score's tokens) skip, saying so, when the exports built here lack them.
"""
import json
import logging
import socket
import time
import urllib.request

import numpy as np
import keras
import openai
import pytest
import tensorflow as tf

from kerasllm.data.chat_template import DEFAULT_PLAIN, ChatTemplate
from kerasllm.export.bert_signatures import bert_signatures
from kerasllm.export.gpt_signatures import gpt_signatures
from kerasllm.export.gpt_signatures import warmup_inputs as gpt_warmup_inputs
from kerasllm.export.saved_model import export_saved_model
from kerasllm.models import BertEncoder, GptCausalLM, registry
from kerasllm.serving.dev_server import DevServer
from kerasllm.serving.gateway import Gateway, Serving
from kerasllm.tokenizers import WordPieceTokenizer, train_sentencepiece
from tests.serving.running_gateway import RunningGateway
from tests.serving.tiny_exports import tiny_seq2seq_export

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "king", "queen", "is", "dead",
         "long", "live", "good", "bad", "film", "!"]
LINES = ["the king is dead, long live the queen", "the queen is dead", "long live the king"]
MAX_NEW = 8
PROMPTS = ["the king", "long live", "the queen is", "dead"]
NO_LOGPROBS = "the exports built here have no token log-probabilities yet (the logprobs branch)"


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(root, {name: {version: path}}, the GPT and its tokenizer in-process)."""
    root = tmp_path_factory.mktemp("saved_models")
    keras.utils.set_random_seed(0)
    pieces = train_sentencepiece(LINES * 50, vocab_size=280)
    gpt = GptCausalLM.from_name("gpt_tiny", vocab_size=pieces.vocab_size).build_for_inputs()
    gpt_path = export_saved_model(
        str(root / "gpt"), gpt_signatures(gpt, pieces, max_prompt_length=32,
                                          max_new_tokens=MAX_NEW),
        [gpt, pieces], check=False, warmup_inputs=gpt_warmup_inputs())
    seq2seq_path = tiny_seq2seq_export(str(root / "seq2seq"), pieces)
    config = registry.get("bert_tiny").replace(vocab_size=len(VOCAB), max_sequence_length=16)
    encoder = BertEncoder(config).build_for_inputs()
    tokenizer = WordPieceTokenizer(VOCAB)
    encoder_path = export_saved_model(str(root / "encoder"),
                                      bert_signatures(encoder, tokenizer, 16),
                                      [encoder, tokenizer], check=False)
    models = {"gpt": {1: gpt_path}, "seq2seq": {1: seq2seq_path},
              "encoder": {1: encoder_path}}
    return root, models, gpt, pieces


@pytest.fixture(scope="module")
def serving(exports):
    """{"rest": TF Serving's REST address, "grpc": its gRPC one} of the development
    server running the exports."""
    with DevServer(str(exports[0]), labels={"gpt": {"stable": 1}}) as server:
        yield {"rest": server.rest_url, "grpc": f"grpc://{server.grpc_target}"}


@pytest.fixture(scope="module")
def gateways(serving):
    """{"final": one final chunk per stream, "chunked": 3 tokens per chunk}."""
    running = {"final": RunningGateway(Gateway(Serving(serving["rest"]),
                                               models=["gpt", "seq2seq", "encoder"])),
               "chunked": RunningGateway(Gateway(Serving(serving["rest"]),
                                                 stream_chunk_tokens=3))}
    yield running
    for gateway in running.values():
        gateway.stop()


@pytest.fixture(scope="module")
def client(gateways):
    return gateways["final"].client()


def has_logprobs(exports):
    gpt = tf.saved_model.load(exports[1]["gpt"][1])
    return ("generate_with_logprobs" in gpt.signatures
            and "tokens" in gpt.signatures["score"].structured_outputs)


def chat(client, content, **kwargs):
    return client.chat.completions.create(
        model="gpt", messages=[{"role": "user", "content": content}], **kwargs)


def test_chat_n2_is_reproducible_with_a_seed_and_equals_the_export(client, exports):
    first = chat(client, "the king", n=2, seed=7, temperature=1.0, max_tokens=MAX_NEW)
    again = chat(client, "the king", n=2, seed=7, temperature=1.0, max_tokens=MAX_NEW)
    assert [c.message.content for c in first.choices] == [
        c.message.content for c in again.choices]
    assert [c.index for c in first.choices] == [0, 1]
    assert first.choices[0].message.content != first.choices[1].message.content
    assert all(c.finish_reason in ("stop", "length") for c in first.choices)
    assert first.object == "chat.completion" and first.model == "gpt"
    assert 0 < first.usage.completion_tokens <= 2 * MAX_NEW

    # Greedy: the export's own answer to the prompt the plain default template renders.
    greedy = chat(client, "the king", temperature=0, max_tokens=MAX_NEW)
    prompt = ChatTemplate(DEFAULT_PLAIN).render([{"role": "user", "content": "the king"}],
                                                add_generation_prompt=True)
    gpt = tf.saved_model.load(exports[1]["gpt"][1])
    expected = gpt.signatures["serving_default"](prompt=tf.constant([prompt]))
    assert greedy.choices[0].message.content == expected["text"].numpy()[0].decode()
    assert greedy.usage.completion_tokens == int(expected["num_tokens"].numpy()[0])


def greedy_text(client, prompt, **kwargs):
    return client.completions.create(model="gpt", prompt=prompt, temperature=0,
                                     max_tokens=MAX_NEW, **kwargs).choices[0]


def test_stop_strings_cut_the_text(client):
    prompt = next(p for p in PROMPTS if len(greedy_text(client, p).text) >= 5)
    text = greedy_text(client, prompt).text
    stop = text[2:4]
    for stops in (stop, ["zzzz", stop]):
        choice = greedy_text(client, prompt, stop=stops)
        assert choice.text == text[:text.find(stop)]
        assert choice.finish_reason == "stop"
    # Chat: the same through the template.
    content = chat(client, prompt, temperature=0, max_tokens=MAX_NEW).choices[0].message.content
    if len(content) >= 3:
        cut = chat(client, prompt, temperature=0, max_tokens=MAX_NEW, stop=[content[1:3]])
        assert cut.choices[0].message.content == content[:content.find(content[1:3])]
        assert cut.choices[0].finish_reason == "stop"


def chunked_decoding(exports, prompt, k):
    """(text, finish reason) of greedy chunked decoding through the export itself: k
    tokens at a time, prompt + text so far re-sent for the next."""
    gpt = tf.saved_model.load(exports[1]["gpt"][1]).signatures["generate_with_options"]
    text, count = "", 0
    while True:
        out = gpt(prompt=tf.constant([prompt + text]),
                  max_new_tokens=tf.constant([min(k, MAX_NEW - count)]),
                  temperature=tf.zeros([1]), top_k=tf.zeros([1], tf.int32),
                  top_p=tf.ones([1]), seed=tf.zeros([1], tf.int32), stop=tf.constant([""]))
        text += out["text"].numpy()[0].decode()
        count += int(out["num_tokens"].numpy()[0])
        reason = out["finish_reason"].numpy()[0].decode()
        if reason != "length" or count >= MAX_NEW:
            return text, "length" if reason == "length" else "stop"


@pytest.mark.parametrize("mode", ["final", "chunked"])
def test_streamed_chunks_reassemble_to_the_text(gateways, mode, exports):
    """One final chunk: the unstreamed text. Chunked: the text of chunked decoding,
    which is the unstreamed text when re-tokenizing the text so far gives the tokens
    generated (not always: a random model writes byte pieces of broken UTF-8)."""
    client = gateways[mode].client()
    template = ChatTemplate(DEFAULT_PLAIN)
    for prompt in PROMPTS[:2]:
        whole = chat(client, prompt, temperature=0, max_tokens=MAX_NEW, n=2)
        if mode == "chunked":
            rendered = template.render([{"role": "user", "content": prompt}],
                                       add_generation_prompt=True)
            text, reason = chunked_decoding(exports, rendered, 3)
            whole.choices[0].message.content = whole.choices[1].message.content = text
            whole.choices[0].finish_reason = whole.choices[1].finish_reason = reason
        stream = chat(client, prompt, temperature=0, max_tokens=MAX_NEW, n=2, stream=True,
                      stream_options={"include_usage": True})
        texts, reasons, chunks, usage = ["", ""], [None, None], 0, None
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
                reasons[choice.index] = choice.finish_reason or reasons[choice.index]
                chunks += bool(choice.delta.content)
        assert texts == [c.message.content for c in whole.choices]
        assert reasons == [c.finish_reason for c in whole.choices]
        assert usage.completion_tokens == whole.usage.completion_tokens or mode == "chunked"
        if mode == "chunked" and whole.usage.completion_tokens > 2 * 3:
            assert chunks > 2  # more than one chunk per choice

    completions = client.completions.create(model="gpt", prompt=PROMPTS, temperature=0,
                                            max_tokens=MAX_NEW, stream=True)
    texts = [""] * len(PROMPTS)
    for chunk in completions:
        for choice in chunk.choices:
            texts[choice.index] += choice.text
    assert texts == [chunked_decoding(exports, p, 3)[0] if mode == "chunked"
                     else greedy_text(client, p).text for p in PROMPTS]


def test_streams_with_stop_strings_end_where_the_unstreamed_text_does(gateways):
    client = gateways["chunked"].client()
    text = greedy_text(client, "the king").text
    if len(text) < 6:
        pytest.skip("the tiny model wrote too little to cut")
    stop = text[3:6]  # in the second chunk or spanning the first two
    streamed = "".join(choice.text for chunk in client.completions.create(
        model="gpt", prompt="the king", temperature=0, max_tokens=MAX_NEW, stop=stop,
        stream=True) for choice in chunk.choices)
    assert streamed == text[:text.find(stop)]


def test_completions_list_of_prompts_n_and_echo(client):
    result = client.completions.create(model="gpt", prompt=PROMPTS[:2], n=2, seed=1,
                                       max_tokens=4, echo=True)
    assert len(result.choices) == 4
    for i, choice in enumerate(result.choices):
        assert choice.index == i and choice.text.startswith(PROMPTS[i // 2])
    # max_tokens 0: nothing generated.
    scored = client.completions.create(model="gpt", prompt="the king", max_tokens=0, echo=True)
    assert scored.choices[0].text == "the king" and scored.usage.completion_tokens == 0


def in_process_log_softmax(gpt, pieces, ids):
    """log_softmax [len(ids), vocab] of the in-process GPT on <s> + ids, position j
    predicting ids[j]."""
    tokens = tf.constant([[pieces.bos_id] + list(ids)], tf.int32)
    logits = gpt({"token_ids": tokens, "padding_mask": tf.ones_like(tokens)},
                 training=False)["logits"]
    return tf.nn.log_softmax(tf.cast(logits[0, :-1], tf.float32)).numpy()


def test_completions_echo_logprobs_equal_the_models_log_softmax(client, exports):
    if not has_logprobs(exports):
        pytest.skip(NO_LOGPROBS)
    _, _, gpt, pieces = exports
    prompt = "the king is dead"
    result = client.completions.create(model="gpt", prompt=prompt, max_tokens=0, echo=True,
                                       logprobs=0)
    logprobs = result.choices[0].logprobs
    ids = pieces.tokenize(tf.constant([prompt])).to_list()[0]
    expected = in_process_log_softmax(gpt, pieces, ids)[np.arange(len(ids)), ids]
    assert len(logprobs.token_logprobs) == len(ids)
    np.testing.assert_allclose(logprobs.token_logprobs, expected, atol=1e-4)
    assert "".join(logprobs.tokens).replace("\u2581", " ") == prompt

    # Generated tokens too, with their top alternatives: greedy, so each is the top one.
    generated = client.completions.create(model="gpt", prompt=prompt, max_tokens=MAX_NEW,
                                          temperature=0, logprobs=3, echo=True)
    logprobs = generated.choices[0].logprobs
    # The echoed prompt's places list the model's own most likely tokens (lm-eval's
    # is_greedy reads them).
    # (OpenAI's alternatives are a dict by token text: tokens of equal text, such as
    # byte pieces, share one entry.)
    prompt_log_softmax = in_process_log_softmax(gpt, pieces, ids)
    for place, top in enumerate(logprobs.top_logprobs[:len(ids)]):
        best = np.sort(prompt_log_softmax[place])[::-1][:3]
        np.testing.assert_allclose(max(top.values()), best[0], atol=1e-4)
        assert all(np.min(np.abs(best - value)) < 1e-4 for value in top.values())
    values = logprobs.token_logprobs[len(ids):]
    context = list(ids)
    for value, top in zip(values, logprobs.top_logprobs[len(ids):]):
        log_softmax = in_process_log_softmax(gpt, pieces, context + [0])[-1]
        best = np.sort(log_softmax)[::-1][:3]
        np.testing.assert_allclose(value, best[0], atol=1e-4)
        np.testing.assert_allclose(sorted(top.values(), reverse=True), best, atol=1e-4)
        context.append(int(np.argmax(log_softmax)))


def test_chat_logprobs_equal_the_models_log_softmax(client, exports):
    if not has_logprobs(exports):
        with pytest.raises(openai.BadRequestError, match="re-export"):
            chat(client, "the king", logprobs=True, top_logprobs=2)
        pytest.skip(NO_LOGPROBS)
    _, _, gpt, pieces = exports
    result = chat(client, "the king", temperature=0, max_tokens=MAX_NEW, logprobs=True,
                  top_logprobs=2)
    content = result.choices[0].logprobs.content
    assert len(content) == result.usage.completion_tokens
    prompt = ChatTemplate(DEFAULT_PLAIN).render([{"role": "user", "content": "the king"}],
                                                add_generation_prompt=True)
    context = pieces.tokenize(tf.constant([prompt])).to_list()[0]
    for entry in content:
        log_softmax = in_process_log_softmax(gpt, pieces, context + [0])[-1]
        best = np.sort(log_softmax)[::-1][:2]
        np.testing.assert_allclose(entry.logprob, best[0], atol=1e-4)
        np.testing.assert_allclose([t.logprob for t in entry.top_logprobs], best, atol=1e-4)
        context.append(int(np.argmax(log_softmax)))
    assert ("".join(e.token for e in content).replace("\u2581", " ")
            == result.choices[0].message.content)


def test_guided_choice_picks_the_option_the_model_scores_best(client, exports):
    options = ["the queen", "long live", "dead"]
    result = client.completions.create(model="gpt", prompt="the king is", max_tokens=4,
                                       extra_body={"guided_choice": options})
    gpt = tf.saved_model.load(exports[1]["gpt"][1])
    scores = gpt.signatures["score"](text=tf.constant(["the king is" + o for o in options]))
    assert result.choices[0].text == options[int(np.argmax(scores["log_probability"]))]
    assert result.choices[0].finish_reason == "stop"
    answer = chat(client, "pick one", extra_body={"guided_choice": options})
    assert answer.choices[0].message.content in options


def test_embeddings_equal_the_export(client, exports):
    texts = ["the king is dead", "long live the queen !"]
    encoder = tf.saved_model.load(exports[1]["encoder"][1])
    expected = encoder.signatures["serving_default"](text=tf.constant(texts))
    result = client.embeddings.create(model="encoder", input=texts, encoding_format="float")
    np.testing.assert_allclose([d.embedding for d in result.data],
                               expected["sentence_embedding"].numpy(), atol=1e-6)
    # Without encoding_format the client asks for base64 and decodes it.
    default = client.embeddings.create(model="encoder", input="the king is dead")
    np.testing.assert_allclose(default.data[0].embedding,
                               expected["sentence_embedding"].numpy()[0], atol=1e-6)
    assert default.usage.prompt_tokens == 6  # [CLS] the king is dead [SEP]


def test_seq2seq_completions_translate(client, exports):
    texts = ["the king is dead", "long live the queen"]
    seq2seq = tf.saved_model.load(exports[1]["seq2seq"][1])
    expected = seq2seq.signatures["translate_with_options"](
        text=tf.constant(texts), beam_size=tf.fill([2], 2), length_penalty=tf.fill([2], 0.6),
        max_length=tf.fill([2], 0))
    result = client.completions.create(model="seq2seq", prompt=texts, n=2,
                                       extra_body={"beam_size": 2})
    assert [c.text for c in result.choices] == [
        t.decode() for row in expected["translations"].numpy() for t in row]


def test_models_versions_labels_and_grpc(client, serving):
    assert [m.id for m in client.models.list().data] == ["gpt", "seq2seq", "encoder"]
    assert client.models.retrieve("encoder").id == "encoder"
    for model in ("gpt:1", "gpt@stable"):
        answer = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "the king"}],
            temperature=0, max_tokens=3)
        assert answer.model == model
    over_grpc = RunningGateway(Gateway(Serving(serving["grpc"])))
    try:
        answer = chat(over_grpc.client(), "the king", temperature=0, max_tokens=MAX_NEW)
        assert answer.choices[0].message.content == chat(
            client, "the king", temperature=0, max_tokens=MAX_NEW).choices[0].message.content
    finally:
        over_grpc.stop()


def error_of(raised):
    body = raised.value.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_unknown_model_is_404_in_openais_shape(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="nobody",
                                       messages=[{"role": "user", "content": "x"}])
    assert error_of(raised)["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nobody:3", input="x")
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nobody")


@pytest.mark.parametrize("settings,param", [
    ({"temperature": 2.5}, "temperature"), ({"top_p": 0}, "top_p"), ({"n": 9}, "n"),
    ({"max_tokens": MAX_NEW + 1}, "max_tokens"), ({"max_tokens": -1}, "max_tokens"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"presence_penalty": 1.0},
                                                    "presence_penalty")])
def test_bad_settings_are_400(client, settings, param, exports):
    if "max_tokens" in settings and settings["max_tokens"] > 0 and not has_logprobs(exports):
        pytest.skip("the export's max_new_tokens comes from `describe`, which the exports "
                    "built here lack: " + NO_LOGPROBS)
    with pytest.raises(openai.BadRequestError) as raised:
        chat(client, "the king", **settings)
    assert error_of(raised)["param"] == param


def test_wrong_family_and_bad_bodies_are_400(client):
    with pytest.raises(openai.BadRequestError, match="embeddings"):
        client.chat.completions.create(model="encoder",
                                       messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="gpt", input="x")
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="gpt", messages=[])


def test_keys_size_limit_timeout_metrics_and_log_lines(serving, tmp_path, caplog):
    keys = RunningGateway(Gateway(Serving(serving["rest"]), api_keys=["sesame"],
                                  max_request_bytes=2000))
    try:
        with pytest.raises(openai.AuthenticationError) as raised:
            chat(keys.client(api_key="wrong"), "the king", max_tokens=2)
        assert error_of(raised)["code"] == "invalid_api_key"
        with caplog.at_level(logging.INFO, logger="kerasllm.serving.gateway"):
            answer = chat(keys.client(api_key="sesame"), "the king", max_tokens=2)
        line = json.loads(caplog.records[-1].getMessage())
        assert line["model"] == "gpt" and line["status"] == 200
        assert line["completion_tokens"] == answer.usage.completion_tokens
        assert line["latency_ms"] > 0
        with pytest.raises(openai.APIStatusError) as raised:
            chat(keys.client(api_key="sesame"), "x" * 3000)
        assert raised.value.status_code == 413
        with urllib.request.urlopen(keys.url.replace("/v1", "/metrics")) as response:
            metrics = response.read().decode("utf-8")
        assert 'kerasllm_gateway_requests_total{endpoint="chat",status="200"} 1.0' in metrics
        assert 'kerasllm_gateway_requests_total{endpoint="chat",status="401"} 1.0' in metrics
        assert "kerasllm_gateway_time_to_first_token_seconds_count" in metrics
    finally:
        keys.stop()

    # A server that accepts connections and never answers: 504 at --timeout_seconds.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    slow = RunningGateway(Gateway(
        Serving(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=5, retries=0),
        timeout_seconds=0.5))
    try:
        start = time.monotonic()
        with pytest.raises(openai.APIStatusError) as raised:
            chat(slow.client(), "the king")
        assert raised.value.status_code == 504 and time.monotonic() - start < 3
    finally:
        slow.stop()
        silent.close()
