"""Knowledge distillation of a BERT classifier: a student BertClassifier trained toward
a teacher's softened predictions as well as the labels."""
import keras
from keras import ops

from kerasllm.errors import DataError
from kerasllm.models.bert.classifier import BertClassifier
from kerasllm.models.losses import distillation_loss
from kerasllm.models.task import TaskModel

TEACHER_LOGITS = "teacher_logits"


class DistillationError(DataError):
    """Distillation settings, or a teacher and student, that do not fit together."""


def check_distillation_settings(temperature, alpha):
    """Raises DistillationError unless temperature > 0 and 0 <= alpha <= 1."""
    if not temperature > 0:
        raise DistillationError(f"the temperature must be above 0, got {temperature}")
    if not 0 <= alpha <= 1:
        raise DistillationError(f"alpha (the soft targets' weight) must be in [0, 1], got "
                                f"{alpha}")


@keras.saving.register_keras_serializable(package="kerasllm")
class DistilledClassifier(TaskModel):
    """A student BertClassifier trained on a teacher's logits: what the training loop
    (or `fit`) trains, while `student` is what is kept, exported and served.

    Inputs: the student's batch dict (token_ids, segment_ids, padding_mask: int
        [batch, seq]; labels: int32 [batch]) plus teacher_logits: float [batch,
        num_classes], the teacher's scores of the same examples, computed ahead
        (log-probabilities will do), so the teacher never runs in the training step
        and may tokenize the text its own way.
    Outputs: the student's, a dict with logits float32 [batch, num_classes].

    Loss: kerasllm.models.losses.distillation_loss at `temperature` with the soft
    targets weighted by `alpha`. Metrics: its soft_loss and hard_loss parts, the
    student's accuracy on the labels, and teacher_agreement, the share of
    examples where the student's most likely class is the teacher's. A
    label_confidence in the batch is ignored: the teacher's soft targets take
    its place.
    """

    def __init__(self, student: BertClassifier, temperature=2.0, alpha=0.5, **kwargs):
        check_distillation_settings(temperature, alpha)
        super().__init__(student.backbone, **kwargs)
        self.student = student
        self.temperature = float(temperature)
        self.alpha = float(alpha)

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def build_for_inputs(self, seq_length=8):
        # The student first, so its weights are named as a classifier built alone
        # (bert_classifier/...), not under this wrapper.
        self.student.build_for_inputs(seq_length)
        return super().build_for_inputs(seq_length)

    def compute_loss_and_metrics(self, batch, training=False):
        """Returns (loss, {"soft_loss", "hard_loss", "accuracy",
        "teacher_agreement"}): float32 scalars, means over the batch."""
        logits = self(batch, training=training)["logits"]
        teacher_logits = batch[TEACHER_LOGITS]
        if teacher_logits.shape[-1] not in (None, self.student.num_classes):
            raise DistillationError(
                f"the teacher gives {teacher_logits.shape[-1]} logits per example, the "
                f"student classifies into {self.student.num_classes} labels")
        parts = distillation_loss(logits, teacher_logits, batch["labels"],
                                  self.temperature, self.alpha)
        predicted = ops.argmax(logits, -1)

        def share_equal(classes):
            return ops.mean(ops.cast(ops.equal(predicted, ops.cast(classes, "int64")),
                                     "float32"))

        return parts.loss, {"soft_loss": parts.soft_loss, "hard_loss": parts.hard_loss,
                            "accuracy": share_equal(batch["labels"]),
                            "teacher_agreement": share_equal(ops.argmax(teacher_logits, -1))}

    def get_config(self):
        return {"student": keras.saving.serialize_keras_object(self.student),
                "temperature": self.temperature, "alpha": self.alpha, "name": self.name,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        return cls(**config)
