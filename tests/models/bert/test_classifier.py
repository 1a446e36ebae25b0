"""BertClassifier: shapes, pooling, loss, and config round-trip."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.models import BertEncoder, registry
from kerasllm.models.bert.classifier import BertClassifier, masked_token_mean
from tests.roundtrip import config_roundtrip

VOCAB_SIZE, SEQ, CLASSES = 50, 8, 3


def tiny_classifier(pooling):
    encoder = BertEncoder(registry.get("bert_tiny").replace(vocab_size=VOCAB_SIZE,
                                                           max_sequence_length=16))
    return BertClassifier(encoder, CLASSES, pooling=pooling).build_for_inputs()


def batch(size=4, real_tokens=5, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros((size, SEQ), "int32")
    mask[:, :real_tokens] = 1
    return {"token_ids": (rng.integers(5, VOCAB_SIZE, (size, SEQ)) * mask).astype("int32"),
            "segment_ids": np.zeros((size, SEQ), "int32"), "padding_mask": mask,
            "labels": rng.integers(0, CLASSES, size).astype("int32")}


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_logits_loss_and_accuracy(pooling):
    model = tiny_classifier(pooling)
    inputs = batch()
    logits = model(inputs)["logits"]
    assert logits.shape == (4, CLASSES) and logits.dtype == "float32"
    loss, metrics = model.compute_loss_and_metrics(inputs)
    expected = keras.losses.sparse_categorical_crossentropy(inputs["labels"], logits,
                                                            from_logits=True)
    np.testing.assert_allclose(float(loss), float(np.mean(expected)), rtol=1e-5)
    assert set(metrics) == {"accuracy"}
    correct = np.argmax(np.asarray(logits), -1) == inputs["labels"]
    assert float(metrics["accuracy"]) == pytest.approx(correct.mean())


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_every_trainable_weight_gets_a_gradient(pooling):
    # Under mean pooling the pooler is frozen: a trainable weight the loss never
    # reaches makes the optimizer warn on every step.
    model = tiny_classifier(pooling)
    with tf.GradientTape() as tape:
        loss, _ = model.compute_loss_and_metrics(batch(), training=True)
    gradients = tape.gradient(loss, model.trainable_variables)
    assert [v.path for v, g in zip(model.trainable_variables, gradients) if g is None] == []
    trainable = {v.path for v in model.trainable_variables}
    assert (model.backbone.pooler.kernel.path in trainable) == (pooling == "cls")


def test_label_confidence_makes_the_target_soft():
    model = tiny_classifier("mean")
    inputs = dict(batch(), label_confidence=np.array([1.0, 0.8, 0.5, 0.4], "float32"))
    log_probabilities = np.asarray(keras.ops.log_softmax(model(inputs)["logits"]))
    loss, _ = model.compute_loss_and_metrics(inputs)
    # The label gets c, each of the two other classes (1 - c) / 2.
    targets = np.full((4, CLASSES), 0.0)
    for row, (label, c) in enumerate(zip(inputs["labels"], inputs["label_confidence"])):
        targets[row] = (1 - c) / 2
        targets[row, label] = c
    expected = -(targets * log_probabilities).sum(-1).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    smoothed = BertClassifier(model.backbone, CLASSES, pooling="mean", label_smoothing=0.3)
    smoothed.build_for_inputs()
    smoothed.classifier.set_weights(model.classifier.get_weights())
    loss, _ = smoothed.compute_loss_and_metrics(inputs)
    expected = -((0.7 * targets + 0.1) * log_probabilities).sum(-1).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_padding_does_not_change_the_logits(pooling):
    model = tiny_classifier(pooling)
    inputs = batch()
    changed = dict(inputs, token_ids=inputs["token_ids"] + 7 * (1 - inputs["padding_mask"]))
    np.testing.assert_allclose(model(inputs)["logits"], model(changed)["logits"], atol=1e-5)


def test_masked_token_mean_ignores_padding_and_empty_rows():
    values = np.arange(2 * 3 * 2, dtype="float32").reshape(2, 3, 2)
    mask = np.array([[1, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(masked_token_mean(values, mask), [[1.0, 2.0], [0.0, 0.0]])


def test_config_round_trip_keeps_settings_and_outputs():
    model = BertClassifier(tiny_classifier("mean").backbone, CLASSES, pooling="mean",
                           label_smoothing=0.2).build_for_inputs()
    restored = config_roundtrip(model)
    assert (restored.num_classes, restored.pooling, restored.dropout_rate,
            restored.label_smoothing) == (CLASSES, "mean", 0.1, 0.2)
    restored.build_for_inputs()
    restored.set_weights(model.get_weights())
    inputs = batch()
    np.testing.assert_allclose(model(inputs)["logits"], restored(inputs)["logits"], atol=1e-6)


def test_bad_settings_are_named():
    encoder = BertEncoder(registry.get("bert_tiny"))
    with pytest.raises(ValueError, match="pooling"):
        BertClassifier(encoder, 2, pooling="max")
    with pytest.raises(ValueError, match="at least 2 classes"):
        BertClassifier(encoder, 1)
    with pytest.raises(ValueError, match="label_smoothing"):
        BertClassifier(encoder, 2, label_smoothing=1.0)
