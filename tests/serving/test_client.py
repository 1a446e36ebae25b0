"""ServingClient over REST (columnar and row) and gRPC against the development server
on 127.0.0.1 running real kerasllm exports: results, versions and labels, retries on
UNAVAILABLE, timeouts, and errors that name the model, version and signature."""
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.export.bert_signatures import bert_signatures
from kerasllm.export.classifier_signatures import classifier_signatures
from kerasllm.export.saved_model import export_saved_model
from kerasllm.export.gpt_signatures import gpt_signatures
from kerasllm.export.gpt_signatures import warmup_inputs as gpt_warmup_inputs
from kerasllm.models import BertClassifier, BertEncoder, BertPretrainer, GptCausalLM, registry
from kerasllm.serving.client import ServingClient, ServingError
from kerasllm.serving.dev_server import DevServer, ServingFailure
from kerasllm.tokenizers import WordPieceTokenizer, train_sentencepiece
from tests.serving.tiny_exports import tiny_seq2seq_export

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "king", "queen", "is", "dead",
         "long", "live", "good", "bad", "film", "!"]
TEXTS = ["the king is dead", "long live the queen !", ""]
SEQ = 16


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """{name: {version: path}} of a tiny encoder (two versions) and a tiny classifier."""
    root = tmp_path_factory.mktemp("saved_models")
    tokenizer = WordPieceTokenizer(VOCAB)
    config = registry.get("bert_tiny").replace(vocab_size=len(VOCAB), max_sequence_length=SEQ)
    encoder_paths = {}
    for version in (1, 2):
        pretrainer = BertPretrainer(BertEncoder(config)).build_for_inputs()
        encoder_paths[version] = export_saved_model(
            str(root / "encoder"), bert_signatures(pretrainer.backbone, tokenizer, SEQ,
                                                  mlm_head=pretrainer.mlm_head, top_k=2),
            [pretrainer, tokenizer], version=version, check=False)
    classifier = BertClassifier(BertEncoder(config), 2).build_for_inputs()
    classifier_path = export_saved_model(
        str(root / "classifier"), classifier_signatures(classifier, tokenizer,
                                                        ["bad", "good"], SEQ),
        [classifier, tokenizer], check=False)
    pieces = train_sentencepiece(["the king is dead, long live the queen"] * 50 + TEXTS,
                                 vocab_size=280)
    gpt = GptCausalLM.from_name("gpt_tiny", vocab_size=pieces.vocab_size).build_for_inputs()
    gpt_path = export_saved_model(
        str(root / "gpt"), gpt_signatures(gpt, pieces, max_prompt_length=16, max_new_tokens=4),
        [gpt, pieces], check=False, warmup_inputs=gpt_warmup_inputs())
    seq2seq_path = tiny_seq2seq_export(str(root / "seq2seq"), pieces)
    return {"root": str(root), "encoder": encoder_paths, "classifier": {1: classifier_path},
            "gpt": {1: gpt_path}, "seq2seq": {1: seq2seq_path}}


class FaultyDevServer(DevServer):
    """The development server, able to fail as a real one does: it answers UNAVAILABLE
    `unavailable` more times, waits `delay` seconds before answering, and records
    every prediction it runs as (model, version, signature)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unavailable, self.delay, self.requests = 0, 0.0, []

    def predict(self, model_spec, inputs, output_filter=()):
        time.sleep(self.delay)
        if self.unavailable > 0:
            self.unavailable -= 1
            raise ServingFailure(grpc.StatusCode.UNAVAILABLE, "the model is loading")
        version, outputs = super().predict(model_spec, inputs, output_filter)
        self.requests.append((model_spec.name, version,
                              model_spec.signature_name or "serving_default"))
        return version, outputs


@pytest.fixture(scope="module")
def store(exports):
    # Without replaying the warmup requests: this tests the client, and they take long.
    with FaultyDevServer(exports["root"], labels={"encoder": {"stable": 1, "canary": 2}},
                         warmup=False) as server:
        yield server


@pytest.fixture(scope="module")
def servers(store):
    return {"grpc": {"grpc_target": store.grpc_target}, "rest": {"rest_url": store.rest_url},
            "rest_rows": {"rest_url": store.rest_url, "request_format": "row"}}


@pytest.fixture(autouse=True)
def healthy_server(store):
    store.unavailable, store.delay = 0, 0.0
    yield
    store.unavailable, store.delay = 0, 0.0


TRANSPORTS = ["grpc", "rest", "rest_rows"]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_embed_fill_mask_and_classify_equal_the_export(servers, exports, transport):
    encoder = tf.saved_model.load(exports["encoder"][2])
    expected = encoder.signatures["serving_default"](text=tf.constant(TEXTS))
    client = ServingClient("encoder", **servers[transport])
    np.testing.assert_allclose(client.embed(TEXTS), expected["sentence_embedding"].numpy(),
                               atol=1e-6)
    masks = client.fill_mask(["the [MASK] is dead", "no mask", "[MASK] [MASK]"])
    assert [len(row) for row in masks] == [1, 0, 2]
    token, score = masks[0][0][0]
    assert token in VOCAB and 0 < score <= 1 and len(masks[0][0]) == 2

    classifier = tf.saved_model.load(exports["classifier"][1])
    probabilities = classifier.signatures["classify"](text=tf.constant(TEXTS))["probabilities"]
    results = ServingClient("classifier", **servers[transport]).classify(TEXTS)
    assert [label for label, _ in results] == [
        ["bad", "good"][i] for i in np.argmax(probabilities.numpy(), -1)]
    np.testing.assert_allclose([p for _, p in results], probabilities.numpy(), atol=1e-6)
    pairs = ServingClient("classifier", **servers[transport]).classify(TEXTS, ["film"] * 3)
    assert len(pairs) == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_generate_equals_the_export(servers, exports, transport):
    gpt = tf.saved_model.load(exports["gpt"][1])
    expected = gpt.signatures["serving_default"](prompt=tf.constant(TEXTS))
    results = ServingClient("gpt", **servers[transport]).generate(TEXTS, max_new_tokens=4)
    assert [text for text, _ in results] == [t.decode() for t in expected["text"].numpy()]
    assert {reason for _, reason in results} <= {"length", "stop_token"}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_translate_equals_the_export(servers, exports, transport):
    seq2seq = tf.saved_model.load(exports["seq2seq"][1])
    rows = len(TEXTS)
    expected = seq2seq.signatures["translate_with_options"](
        text=tf.constant(TEXTS), beam_size=tf.fill([rows], 2),
        length_penalty=tf.fill([rows], 0.6), max_length=tf.fill([rows], 6))
    results = ServingClient("seq2seq", **servers[transport]).translate(
        TEXTS, beam_size=2, max_length=6)
    assert [text for text, _ in results] == [t.decode() for t in expected["translation"].numpy()]
    np.testing.assert_allclose([score for _, score in results], expected["score"], rtol=1e-5)
    assert results[2] == ("", 0.0)  # an empty source


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_versions_and_labels_reach_the_version_asked_for(servers, store, transport):
    for addressing, version in [({}, 2), ({"version": 1}, 1), ({"label": "stable"}, 1),
                                ({"label": "canary"}, 2)]:
        ServingClient("encoder", **servers[transport], **addressing).embed(["the king"])
        assert store.requests[-1] == ("encoder", version, "serving_default")


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_unavailable_is_retried_with_backoff(servers, store, transport):
    store.unavailable = 2
    client = ServingClient("encoder", **servers[transport], retries=3, backoff=0.01)
    assert client.embed(["the king"]).shape == (1, 128)
    store.unavailable = 5
    with pytest.raises(ServingError, match=r"model 'encoder' \(label 'stable'\), signature "
                                           r"'serving_default': the server is unavailable "
                                           r"after 2 attempts"):
        ServingClient("encoder", **servers[transport], label="stable", retries=1,
                      backoff=0.01).embed(["x"])


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_a_slow_server_times_out_and_is_named(servers, store, transport):
    store.delay = 1.0
    with pytest.raises(ServingError, match="model 'encoder' \\(version 2\\).*unavailable"):
        ServingClient("encoder", **servers[transport], version=2, timeout=0.2,
                      retries=0).embed(["x"])


@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_errors_name_the_model_version_and_signature(servers, transport):
    with pytest.raises(ServingError, match=r"model 'encoder' \(newest version\), signature "
                                           r"'classify'.*not found"):
        ServingClient("encoder", **servers[transport], retries=0).predict(
            {"text": ["x"]}, "classify")
    with pytest.raises(ServingError, match=r"model 'nobody'.*not found"):
        ServingClient("nobody", **servers[transport], retries=0).embed(["x"])
