"""distillation_loss against a NumPy reference (its gradient finite however sure the
teacher), and DistilledClassifier: its loss and metrics, `fit` toward a teacher, its
config, and its bad settings."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.models import BertEncoder, registry
from kerasllm.models.bert.classifier import BertClassifier
from kerasllm.models.bert.distillation import DistillationError, DistilledClassifier
from kerasllm.models.losses import distillation_loss
from tests.roundtrip import config_roundtrip

VOCAB_SIZE, SEQ, CLASSES = 50, 8, 3


def log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def numpy_reference(student, teacher, labels, temperature, alpha):
    """Hinton et al.'s loss written out in float64: (total, soft, hard)."""
    student, teacher = student.astype(np.float64), teacher.astype(np.float64)
    p = np.exp(log_softmax(teacher / temperature))
    kl = (p * (np.log(p) - log_softmax(student / temperature))).sum(-1)
    soft = temperature ** 2 * kl.mean()
    hard = -log_softmax(student)[np.arange(len(labels)), labels].mean()
    return alpha * soft + (1 - alpha) * hard, soft, hard


def logits_and_labels(seed=0, batch=6, scale=3.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, scale, (batch, CLASSES)).astype("float32"),
            rng.normal(0, scale, (batch, CLASSES)).astype("float32"),
            rng.integers(0, CLASSES, batch).astype("int32"))


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 8.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_loss_equals_the_numpy_reference(temperature, alpha):
    student, teacher, labels = logits_and_labels(seed=int(temperature * 10 + alpha * 100))
    parts = distillation_loss(student, teacher, labels, temperature, alpha)
    expected = numpy_reference(student, teacher, labels, temperature, alpha)
    np.testing.assert_allclose([float(value) for value in parts], expected, rtol=1e-5,
                               atol=1e-6)


def test_alpha_0_is_plain_cross_entropy_and_alpha_1_the_soft_targets_alone():
    student, teacher, labels = logits_and_labels(seed=1)
    plain = keras.losses.sparse_categorical_crossentropy(labels, student, from_logits=True)
    loss = distillation_loss(student, teacher, labels, 3.0, 0.0).loss
    np.testing.assert_allclose(float(loss), float(np.mean(plain)), rtol=1e-6)
    # With alpha 1 the labels do not count: other labels, the same loss.
    soft = distillation_loss(student, teacher, labels, 3.0, 1.0).loss
    other = distillation_loss(student, teacher, (labels + 1) % CLASSES, 3.0, 1.0).loss
    assert float(soft) == float(other) > 0
    # A student that matches the teacher has nothing left to learn from it.
    assert float(distillation_loss(teacher, teacher, labels, 3.0, 1.0).loss) == \
        pytest.approx(0.0, abs=1e-6)


def soft_gradient(student, teacher, labels, temperature, alpha=1.0):
    student = tf.Variable(student)
    with tf.GradientTape() as tape:
        loss = distillation_loss(student, teacher, labels, temperature, alpha).loss
    return tape.gradient(loss, student).numpy()


def test_the_gradient_is_finite_and_keeps_its_scale_across_temperatures():
    student, teacher, labels = logits_and_labels(seed=2)
    # A certain teacher (probabilities that underflow to 0) and a certain student.
    teacher[0] = [0.0, -1e4, -1e4]
    student[1] = [1e3, -1e3, 0.0]
    for temperature in (0.5, 1.0, 4.0, 20.0):
        for alpha in (0.5, 1.0):
            assert np.isfinite(soft_gradient(student, teacher, labels, temperature,
                                             alpha)).all()
    # The T^2 factor: for logits close to the teacher's, the soft gradient barely
    # depends on T (without it, it would shrink as 1/T^2).
    close = teacher[2:] + np.float32(0.1) * student[2:]
    norms = [np.linalg.norm(soft_gradient(close, teacher[2:], labels[2:], temperature))
             for temperature in (4.0, 16.0)]
    assert norms[1] == pytest.approx(norms[0], rel=0.1)


def tiny_student(**settings):
    encoder = BertEncoder(registry.get("bert_tiny").replace(
        vocab_size=VOCAB_SIZE, max_sequence_length=16, num_layers=1, dropout=0.0,
        attention_dropout=0.0))
    return BertClassifier(encoder, CLASSES, pooling="mean", dropout=0.0, **settings)


def batches(rows=32, seed=0):
    """Token batches with the teacher's logits: a fixed function of the first token."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(5, VOCAB_SIZE, (rows, SEQ)).astype("int32")
    teacher = np.eye(CLASSES, dtype="float32")[tokens[:, 0] % CLASSES] * 4.0
    return {"token_ids": tokens, "segment_ids": np.zeros_like(tokens),
            "padding_mask": np.ones_like(tokens),
            "labels": rng.integers(0, CLASSES, rows).astype("int32"),
            "teacher_logits": teacher}


def test_loss_and_metrics_are_the_students_against_the_teacher():
    model = DistilledClassifier(tiny_student(), temperature=2.0, alpha=0.7).build_for_inputs()
    batch = batches(rows=8)
    loss, metrics = model.compute_loss_and_metrics(batch)
    logits = model.student(batch)["logits"].numpy()
    expected = numpy_reference(logits, batch["teacher_logits"], batch["labels"], 2.0, 0.7)
    np.testing.assert_allclose([float(loss), float(metrics["soft_loss"]),
                                float(metrics["hard_loss"])], expected, rtol=1e-5)
    predicted = logits.argmax(-1)
    assert float(metrics["accuracy"]) == pytest.approx((predicted == batch["labels"]).mean())
    assert float(metrics["teacher_agreement"]) == pytest.approx(
        (predicted == batch["teacher_logits"].argmax(-1)).mean())
    # The student is built as a classifier on its own: its weights' names say so.
    assert model.student.trainable_variables[0].path.startswith("bert_classifier")
    assert len(model.trainable_variables) == len(model.student.trainable_variables)


def test_fit_moves_the_student_toward_the_teacher():
    model = DistilledClassifier(tiny_student(), temperature=1.0, alpha=1.0).build_for_inputs()
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    train = tf.data.Dataset.from_tensor_slices(batches(rows=96)).batch(16)
    before = model.evaluate(train, return_dict=True, verbose=0)["teacher_agreement"]
    model.fit(train, epochs=8, verbose=0)
    after = model.evaluate(train, return_dict=True, verbose=0)["teacher_agreement"]
    # Random labels: only the teacher can have taught this.
    assert after >= 0.9 > before


def test_config_round_trip_keeps_the_student_and_settings():
    model = DistilledClassifier(tiny_student(label_smoothing=0.1), temperature=3.0,
                                alpha=0.25).build_for_inputs()
    restored = config_roundtrip(model)
    assert (restored.temperature, restored.alpha) == (3.0, 0.25)
    assert isinstance(restored.student, BertClassifier)
    assert restored.student.label_smoothing == 0.1


def test_bad_settings_and_teachers_are_named():
    with pytest.raises(DistillationError, match="temperature must be above 0"):
        DistilledClassifier(tiny_student(), temperature=0.0)
    for alpha in (-0.1, 1.5):
        with pytest.raises(DistillationError, match=r"alpha .* must be in \[0, 1\]"):
            DistilledClassifier(tiny_student(), alpha=alpha)
    model = DistilledClassifier(tiny_student()).build_for_inputs()
    batch = batches(rows=4)
    batch["teacher_logits"] = np.zeros((4, CLASSES + 1), "float32")
    with pytest.raises(DistillationError, match="teacher gives 4 logits .* into 3 labels"):
        model.compute_loss_and_metrics(batch)
