"""BERT with a sequence classification head: one label per text (or text pair)."""
import keras
from keras import ops

from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.task import TaskModel

POOLINGS = ("cls", "mean")


def masked_token_mean(sequence_output, padding_mask):
    """Mean of the real tokens' outputs (not length-normalised, unlike
    `kerasllm.layers.mean_pooling.sentence_embedding`: a classifier head wants
    the raw scale the encoder was trained to produce).

    Args:
      sequence_output: float [batch, seq, hidden].
      padding_mask: int/bool [batch, seq], 1 = real token.
    Returns:
      float [batch, hidden] in the dtype of `sequence_output`; all-padding rows give 0.
    """
    weights = ops.expand_dims(ops.cast(padding_mask, sequence_output.dtype), -1)
    summed = ops.sum(sequence_output * weights, axis=1)
    return summed / ops.maximum(ops.sum(weights, axis=1), 1.0)


@keras.saving.register_keras_serializable(package="kerasllm")
class BertClassifier(TaskModel):
    """A BERT encoder, a pooled summary, dropout and one Dense layer of `num_classes` logits.

    pooling="cls" uses the encoder's tanh pooler over [CLS] (as in the BERT paper);
    pooling="mean" averages the real tokens' outputs (how sentence-transformers
    checkpoints such as all-MiniLM-L6-v2 were trained, whose pooler is untrained).

    Inputs: a batch dict with token_ids, segment_ids, padding_mask: int [batch, seq];
        for training also labels: int32 [batch], class ids in [0, num_classes),
        and optionally label_confidence: float [batch] in [1/num_classes, 1].
    Outputs: dict with logits float32 [batch, num_classes].

    Loss = mean cross-entropy over the batch, against each label's one-hot
    target, or, with label_confidence c, the target giving the label c and
    every other class (1 - c) / (num_classes - 1); `label_smoothing` e then mixes
    that target with the uniform one, (1 - e) * target + e / num_classes.
    """

    def __init__(self, backbone: BertEncoder, num_classes, pooling="cls", dropout=0.1,
                 label_smoothing=0.0, **kwargs):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        super().__init__(backbone, **kwargs)
        # Under mean pooling no loss reaches the pooler, and a trainable weight
        # without a gradient makes the optimizer warn on every run.
        backbone.pooler.trainable = pooling == "cls"
        if int(num_classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        if not 0 <= label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)
        self.pooling = pooling
        self.dropout_rate = float(dropout)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy,
                                            name="dropout")
        self.classifier = self.head_dense(self.num_classes, "classifier")

    def call(self, inputs, training=None):
        outputs = self.backbone(inputs, training=training)
        if self.pooling == "cls":
            pooled = outputs["pooled_output"]
        else:
            pooled = masked_token_mean(outputs["sequence_output"], inputs["padding_mask"])
        logits = self.classifier(self.dropout(pooled, training=training))
        # float32 even under mixed precision: the softmax and loss need the range.
        return {"logits": ops.cast(logits, "float32")}

    def compute_loss_and_metrics(self, batch, training=False):
        """Returns (loss, {"accuracy"}): float32 scalars, means over the batch."""
        logits = self(batch, training=training)["logits"]
        confidence = ops.cast(batch.get("label_confidence", ops.ones_like(logits[:, 0])),
                              "float32")[:, None]
        one_hot = ops.one_hot(batch["labels"], self.num_classes)
        targets = one_hot * confidence + (1 - one_hot) * (1 - confidence) / (self.num_classes - 1)
        loss = ops.mean(keras.losses.categorical_crossentropy(
            targets, logits, from_logits=True, label_smoothing=self.label_smoothing))
        correct = ops.equal(ops.argmax(logits, -1), ops.cast(batch["labels"], "int64"))
        return loss, {"accuracy": ops.mean(ops.cast(correct, "float32"))}

    def task_config(self):
        return {"num_classes": self.num_classes, "pooling": self.pooling,
                "dropout": self.dropout_rate, "label_smoothing": self.label_smoothing}
