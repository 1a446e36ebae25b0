"""A BERT export called in a fresh process, as TF Serving would, equals the model."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
from kerasllm.export.bert_signatures import bert_signatures
from kerasllm.export.classifier_signatures import classifier_signatures
from kerasllm.export.errors import ExportError
from kerasllm.export.saved_model import METADATA_FILE, export_saved_model
from kerasllm.export.check import check_saved_model
from kerasllm.export.warmup import (BATCH_SIZES, SAMPLE_TEXTS, predict_logs,
                                    read_warmup_requests, write_warmup_requests)
from kerasllm.models import BertClassifier, BertPretrainer
from kerasllm.serving.batching import PER_VERSION_FILE, parse_batching
from tests.fresh_process import serve_in_fresh_process

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "king", "queen", "is", "dead",
         "long", "live", "to", "be", "or", "not", "that", "question", ",", ".", "!", "##s",
         "de", "##n", "##mark"]
TEXTS = ["The king is dead, long live the queen!", "", "to be or not to be " * 200,
         "denmark"]
MAX_SEQ_LENGTH = 16


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tokenizer = WordPieceTokenizer(VOCAB)
    model = BertPretrainer.from_name("bert_tiny", vocab_size=len(VOCAB),
                                     max_sequence_length=32).build_for_inputs()
    signatures = bert_signatures(model.backbone, tokenizer, MAX_SEQ_LENGTH,
                                 mlm_head=model.mlm_head, top_k=3)
    root = str(tmp_path_factory.mktemp("saved_models") / "bert_test")
    path = export_saved_model(root, signatures, [model, tokenizer],
                              metadata={"model": "bert_tiny"})
    return path, model, tokenizer, signatures


def test_layout_and_metadata(exported):
    path, *_ = exported
    assert os.path.basename(path) == "1"
    assert tf.saved_model.contains_saved_model(path)
    with open(os.path.join(path, METADATA_FILE)) as f:
        assert json.load(f)["model"] == "bert_tiny"
    assert [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".")] == []


def test_fresh_process_outputs_equal_in_process_model(exported, tmp_path):
    path, model, tokenizer, signatures = exported
    served = serve_in_fresh_process(
        path, {"text": TEXTS, "text_b": ["long live", "", "the queen", ""]}, str(tmp_path))
    local = signatures["serving_default"](tf.constant(TEXTS))
    for name in ["sequence_output", "pooled_output", "sentence_embedding"]:
        diff = np.max(np.abs(served[f"serving_default/{name}"] - local[name].numpy()))
        assert diff <= 1e-5, (name, diff)
    np.testing.assert_array_equal(served["serving_default/token_ids"], local["token_ids"])
    # The in-graph tokenizer: lower-cased, split, [CLS] ... [SEP], truncated, padded.
    ids = served["serving_default/token_ids"]
    assert list(ids[0][:6]) == [2, 5, 6, 8, 9, 18]
    assert list(ids[1][:3]) == [2, 3, 0]  # empty string -> [CLS] [SEP]
    assert ids.shape == (4, MAX_SEQ_LENGTH) and ids[2][-1] == 3  # truncated, ends in [SEP]
    direct = model.backbone({k: tf.constant(served[f"serving_default/{k}"])
                            for k in ["token_ids", "padding_mask"]}
                           | {"segment_ids": tf.zeros_like(ids)})
    assert np.max(np.abs(direct["sequence_output"].numpy()
                         - served["serving_default/sequence_output"])) <= 1e-5
    pair_segments = served["encode_pair/token_ids"][0]
    assert 3 in pair_segments and list(pair_segments).count(3) == 2


def test_fill_mask_returns_top_tokens_per_mask(exported, tmp_path):
    path, *_ = exported
    served = serve_in_fresh_process(
        path, {"text": ["the [MASK] is dead", "no mask here", "[MASK] [MASK]"]}, str(tmp_path))
    positions = served["fill_mask/mask_positions"]
    assert positions.tolist() == [[2, -1], [-1, -1], [1, 2]]
    tokens = served["fill_mask/top_tokens"]
    scores = served["fill_mask/top_scores"]
    assert tokens.shape == scores.shape == (3, 2, 3)
    assert all(t.decode() in VOCAB for t in tokens[0, 0])
    assert np.all(np.diff(scores[0, 0]) <= 0) and 0 < scores[0, 0, 0] <= 1


SHORT_TEXTS = ["the king", "", "long live the queen"]  # 6 tokens at most, with [CLS] [SEP]


def real_positions_equal(longest, fixed):
    """Outputs of a signature padded to the batch's longest row equal its fixed-shape
    outputs: within 1e-5, at the real tokens where outputs are per token."""
    mask = longest["padding_mask"].numpy().astype(bool) if "padding_mask" in longest else None
    for name, value in longest.items():
        value, expected = value.numpy(), fixed[name].numpy()
        if value.shape != expected.shape:  # [N, S, ...]: S is the longest row here
            assert expected.shape[1] == MAX_SEQ_LENGTH > value.shape[1] == mask.shape[1]
            assert not fixed["padding_mask"].numpy()[:, mask.shape[1]:].any()
            value, expected = value[mask], expected[:, :mask.shape[1]][mask]
        if value.dtype.kind in "iuSO":
            np.testing.assert_array_equal(value, expected, err_msg=name)
        else:
            assert np.max(np.abs(value - expected), initial=0) <= 1e-5, name


def test_padding_to_the_longest_row_gives_the_fixed_shape_outputs(exported):
    _, model, tokenizer, longest = exported
    fixed = bert_signatures(model.backbone, tokenizer, MAX_SEQ_LENGTH,
                            mlm_head=model.mlm_head, top_k=3, pad_to_max_length=True)
    short = tf.constant(SHORT_TEXTS)
    assert longest["serving_default"](short)["sequence_output"].shape[1] == 6
    assert fixed["serving_default"](short)["sequence_output"].shape[1] == MAX_SEQ_LENGTH
    for texts in (short, tf.constant(TEXTS)):
        real_positions_equal(longest["serving_default"](texts),
                             fixed["serving_default"](texts))
        pairs = tf.constant(["a", "long live", "the king is dead"] + ["be"] * (len(texts) - 3))
        real_positions_equal(longest["encode_pair"](texts, pairs),
                             fixed["encode_pair"](texts, pairs))
    masked = tf.constant(["the [MASK] is dead", "[MASK] [MASK]"])
    real_positions_equal(longest["fill_mask"](masked), fixed["fill_mask"](masked))


def test_classifier_padding_to_the_longest_row_gives_the_fixed_shape_outputs(exported):
    _, model, tokenizer, _ = exported
    classifier = BertClassifier(model.backbone, 2, dropout=0.0)
    longest, fixed = (classifier_signatures(classifier, tokenizer, ["a", "b"], MAX_SEQ_LENGTH,
                                            pad_to_max_length=pad) for pad in (False, True))
    for texts in (SHORT_TEXTS, TEXTS):
        texts = tf.constant(texts)
        real_positions_equal(longest["classify"](texts), fixed["classify"](texts))
        real_positions_equal(longest["classify_pair"](texts, texts),
                             fixed["classify_pair"](texts, texts))


def test_existing_version_is_never_overwritten(exported):
    path, model, tokenizer, signatures = exported
    before = os.path.getmtime(os.path.join(path, "saved_model.pb"))
    with pytest.raises(ExportError, match="already exists"):
        export_saved_model(os.path.dirname(path), signatures, [model, tokenizer], version=1)
    assert os.path.getmtime(os.path.join(path, "saved_model.pb")) == before


def test_saved_model_cli_lists_the_raw_text_signatures(exported):
    path, *_ = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    for signature in ["serving_default", "encode_pair", "fill_mask"]:
        assert f"signature_def['{signature}']" in result.stdout
    assert "inputs['text'] tensor_info:\n        dtype: DT_STRING" in result.stdout
    assert "outputs['top_tokens'] tensor_info:\n        dtype: DT_STRING" in result.stdout


def test_warmup_requests_cover_every_signature_and_replay(exported):
    path, *_ = exported
    requests = read_warmup_requests(path)
    signatures = {"serving_default", "encode_pair", "fill_mask"}
    assert len(requests) == len(signatures) * len(BATCH_SIZES) * len(SAMPLE_TEXTS)
    assert {name for name, _ in requests} == signatures
    sizes = {(name, len(inputs["text"])) for name, inputs in requests}
    assert sizes == {(name, size) for name in signatures for size in BATCH_SIZES}
    pair = next(inputs for name, inputs in requests if name == "encode_pair")
    assert set(pair) == {"text", "text_b"}
    # The check replays each request on the signature it names, as TF Serving does.
    check_saved_model(path, verbose=False)
    with open(os.path.join(path, PER_VERSION_FILE)) as f:
        assert list(parse_batching(f.read()).allowed_batch_sizes) == list(BATCH_SIZES)


def test_a_warmup_request_the_model_cannot_take_fails_the_check(exported, tmp_path):
    import shutil
    copy = str(tmp_path / "model")
    shutil.copytree(exported[0], copy)
    write_warmup_requests(copy, predict_logs("m", {"serving_default": {"sentence": ["a"]}}))
    with pytest.raises(ExportError, match="warmup request 0 names signature 'serving_default'"):
        check_saved_model(copy, verbose=False)
