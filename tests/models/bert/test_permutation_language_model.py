"""The permutation language model: what its query stream may and may not see, a
short run of the training loop, its config, and its checkpoint as a fine-tuning
run's starting point."""
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.data.permutation_lm import add_permutation_targets, permutation_masks
from kerasllm.models import BertClassifier, PermutationLanguageModel, registry
from kerasllm.pretrained import load_pretrained
from kerasllm.pretrained.model_dir import describe_model_dir
from kerasllm.tokenizers import WordPieceTokenizer
from tests.roundtrip import config_roundtrip
from tests.training.helpers import run

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(35)]
CLS, SEP = 2, 3
TINY = {"vocab_size": len(VOCAB), "max_sequence_length": 16, "dropout": 0.0,
        "attention_dropout": 0.0}


def tiny_model(**overrides):
    return PermutationLanguageModel.from_name("bert_tiny", **{**TINY, **overrides})


def hand_worked_batch(token_ids):
    """[CLS] a b c d [SEP] PAD in the order [CLS] [SEP] c a d b, K = 2: targets d
    (position 4) then b (position 2), the last in the order."""
    token_ids = tf.constant([token_ids], tf.int32)
    padding_mask = tf.constant([[1, 1, 1, 1, 1, 1, 0]])
    targets = permutation_masks(tf.constant([[0, 5, 3, 1, 4, 2, 6]]), padding_mask,
                                partial_prediction=2)
    np.testing.assert_array_equal(targets["target_positions"], [[4, 2, 0, 0]])
    return {"token_ids": token_ids, "segment_ids": tf.zeros_like(token_ids),
            "padding_mask": padding_mask, **targets,
            "target_ids": tf.gather(token_ids, targets["target_positions"], batch_dims=1)}


def test_the_query_stream_sees_the_tokens_before_it_never_its_own():
    # Weights larger than BERT's 0.02 make every dependency large enough to see.
    model = tiny_model(initializer_range=0.2).build_for_inputs()
    original = [CLS, 10, 11, 12, 13, SEP, 0]

    def streams_and_logits(position=None, new_id=None):
        token_ids = list(original)
        if position is not None:
            token_ids[position] = new_id
        batch = hand_worked_batch(token_ids)
        content, query = model.backbone.two_stream(batch, model.query_start)
        return np.asarray(content), np.asarray(query), np.asarray(model(batch)["plm_logits"])

    content, query, logits = streams_and_logits()

    def unchanged(a, b):
        return np.abs(a - b).max() < 1e-5

    def changed(a, b):
        return np.abs(a - b).max() > 1e-3

    # b (position 2) is last in the order: its query stream sees every token but its own.
    new_content, new_query, new_logits = streams_and_logits(2, 30)
    assert unchanged(new_query[0, 2], query[0, 2]) and unchanged(new_logits[0, 1], logits[0, 1])
    assert changed(new_content[0, 2], content[0, 2])  # the content stream sees it
    for earlier in (0, 1, 3, 4, 5):
        assert changed(streams_and_logits(earlier, 30)[1][0, 2], query[0, 2])
    # d (position 4) comes before b: b's token is hidden from both of d's streams.
    assert unchanged(new_query[0, 4], query[0, 4]) and unchanged(new_logits[0, 0], logits[0, 0])
    assert unchanged(new_content[0, 4], content[0, 4])
    new_content, new_query, _ = streams_and_logits(4, 30)
    assert unchanged(new_query[0, 4], query[0, 4]) and changed(new_content[0, 4], content[0, 4])
    assert changed(streams_and_logits(3, 30)[1][0, 4], query[0, 4])  # c precedes d
    # Padding is seen by no real position of either stream; but [CLS], first in the
    # order, has nothing to see in the query stream, so its attention spreads over
    # every key (a row no prediction and no other row reads).
    new_content, new_query, new_logits = streams_and_logits(6, 30)
    assert unchanged(new_content[0, :6], content[0, :6])
    assert unchanged(new_query[0, 1:6], query[0, 1:6])
    assert unchanged(new_logits[0, :2], logits[0, :2])  # the real targets


def training_windows(count=8, length=16, seed=0):
    rng = np.random.default_rng(seed)
    token_ids = rng.integers(5, len(VOCAB), (count, length)).astype("int32")
    token_ids[:, 0], token_ids[:, -1] = CLS, SEP
    windows = {"token_ids": token_ids, "segment_ids": np.zeros_like(token_ids),
               "padding_mask": np.ones_like(token_ids)}
    batch = add_permutation_targets(windows, tf.constant([seed, 1]), partial_prediction=3)
    return {name: np.asarray(value) for name, value in batch.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model_dir, result, logged metrics) of 30 steps of the training loop on a
    fixed batch of windows, its model_dir described as pretrain_bert does it."""
    model_dir = tmp_path_factory.mktemp("plm")
    result, logged = run(model_dir, build_task=tiny_model, examples=training_windows())
    describe_model_dir(str(model_dir), "bert", result.task.backbone.config,
                       WordPieceTokenizer(VOCAB))
    return str(model_dir), result, logged


def test_training_steps_lower_the_loss_on_a_fixed_batch(trained):
    _, result, logged = trained
    first, last = logged[0][1]["plm_loss"], logged[-1][1]["plm_loss"]
    assert result.step == 30
    assert first > 2.5 and last < 0.5 * first, (first, last)
    assert logged[-1][1]["plm_accuracy"] > logged[0][1]["plm_accuracy"]


def test_its_checkpoint_restores_into_a_classifier_encoder(trained):
    model_dir, result, _ = trained
    trained_encoder = result.task.backbone.get_weights()
    encoder, tokenizer = load_pretrained(model_dir)  # finetune_bert's --init_checkpoint
    assert tokenizer.vocabulary == VOCAB
    classifier = BertClassifier(encoder, num_classes=2).build_for_inputs()
    assert len(classifier.backbone.get_weights()) == len(trained_encoder)
    for restored, saved in zip(classifier.backbone.get_weights(), trained_encoder):
        np.testing.assert_array_equal(restored, saved)
    # The weights came from the checkpoint, not a fresh initialisation.
    fresh = tiny_model().build_for_inputs().backbone.get_weights()
    assert any(not np.array_equal(a, b) for a, b in zip(fresh, trained_encoder))


def test_config_round_trip_and_tied_head():
    model = tiny_model().build_for_inputs()
    clone = config_roundtrip(model).build_for_inputs()
    assert clone.backbone.config == model.backbone.config
    assert clone.count_params() == model.count_params()
    table = clone.backbone.token_embedding.embeddings
    assert clone.plm_head.token_embedding.embeddings is table
    assert sum(w is table for w in clone.weights) == 1
    # Beyond the encoder: the head and the query stream's start vector alone.
    encoder = registry.get("bert_tiny").replace(**TINY)
    assert model.count_params() - model.backbone.count_params() == (
        encoder.hidden_size * (encoder.hidden_size + 1) + 2 * encoder.hidden_size
        + encoder.vocab_size + encoder.hidden_size)


def test_serving_signatures_are_the_plain_encoders():
    model = tiny_model(max_sequence_length=8).build_for_inputs()
    model.tokenizer = WordPieceTokenizer(VOCAB)
    signatures = model.serving_signatures()
    assert set(signatures) == {"serving_default", "encode_pair"}
    outputs = signatures["serving_default"](text=tf.constant(["w1 w2 w3"]))
    inputs = {name: outputs[name] for name in ("token_ids", "padding_mask")}
    np.testing.assert_array_equal(inputs["token_ids"], [[CLS, 6, 7, 8, SEP]])
    expected = model.backbone({**inputs, "segment_ids": tf.zeros_like(inputs["token_ids"])})
    np.testing.assert_allclose(outputs["sequence_output"], expected["sequence_output"],
                               atol=1e-5)
