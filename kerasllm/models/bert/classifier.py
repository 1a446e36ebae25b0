"""BERT with a sequence classification head: one label per text (or text pair)."""
import keras
from keras import ops

import tensorflow as tf

from kerasllm.errors import DataError
from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.bert.text_task import BertTextTask
from kerasllm.raw_text import text_batch

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
class BertClassifier(BertTextTask):
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

    With a tokenizer, on raw text, through its export's functions
    (kerasllm.export.classifier_signatures): `classify(texts[, text_b])` (or
    `predict` on strings) returns label, label_id and probabilities, labels named
    by `label_names` (default "0", "1", ...); `fit(texts, labels)` or
    `fit((texts, texts_b), labels)` with class ids.
    """

    def __init__(self, backbone: BertEncoder, num_classes, pooling="cls", dropout=0.1,
                 label_smoothing=0.0, label_names=None, **kwargs):
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
        self.label_names = [str(name) for name in (label_names or range(self.num_classes))]
        if len(self.label_names) != self.num_classes:
            raise ValueError(f"{len(self.label_names)} label_names for {self.num_classes} "
                             "classes")
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

    def preprocess(self, x, y=None):
        """(texts [B] or (texts [B], texts_b [B]), class ids [B]) -> a training batch."""
        if y is None:
            raise DataError("a classifier trains on (texts, labels); pass the labels too")
        return {**self.packed(*(x if isinstance(x, tuple) else (x,))),
                "labels": tf.cast(y, tf.int32)}

    def serving_signatures(self):
        """classifier_signatures of this classifier and its label names."""
        from kerasllm.export.classifier_signatures import classifier_signatures
        return classifier_signatures(self, self.needs_tokenizer("classify"), self.label_names,
                                     self.sequence_length)

    def classify(self, texts, text_b=None):
        """{"label", "label_id", "probabilities" [C]} of each text (a string, or a
        list), or of each (text, text_b) pair."""
        texts, single = text_batch(texts)
        if text_b is None:
            return self.run_text_function("classify", {"text": texts}, single)
        return self.run_text_function(
            "classify_pair", {"text": texts, "text_b": text_batch(text_b, "text_b")[0]},
            single)

    def predict(self, x, *args, **kwargs):
        """classify() for raw text (a string, a list, or a (texts, texts_b) pair of
        lists); Keras' predict (logits) for batches of model inputs."""
        if isinstance(x, str) or (isinstance(x, (list, tuple)) and x
                                  and isinstance(x[0], str)):
            return self.classify(x)
        if isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], list):
            return self.classify(*x)
        return super().predict(x, *args, **kwargs)

    def task_config(self):
        return {**super().task_config(), "num_classes": self.num_classes,
                "pooling": self.pooling, "dropout": self.dropout_rate,
                "label_smoothing": self.label_smoothing, "label_names": self.label_names}
