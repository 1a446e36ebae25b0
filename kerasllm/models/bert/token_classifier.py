"""BERT with a per-token classification head, for tagging words (e.g. named entities)."""
import keras
from keras import ops

from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.losses import masked_mean
from kerasllm.models.task import TaskModel


@keras.saving.register_keras_serializable(package="kerasllm")
class BertTokenClassifier(TaskModel):
    """A BERT encoder, dropout and one Dense layer scoring `num_labels` labels per token.

    Inputs: a batch dict with token_ids, segment_ids, padding_mask: int [batch, seq];
        for training also labels: int32 [batch, seq] and label_weights: float32
        [batch, seq], 1 on the first piece of each word and 0 on later pieces,
        [CLS], [SEP] and [PAD] (the label of a word is read at its first piece).
    Outputs: dict with logits float32 [batch, seq, num_labels].

    Loss = cross-entropy averaged over the weighted positions.
    """

    def __init__(self, backbone: BertEncoder, num_labels, dropout=0.1, **kwargs):
        super().__init__(backbone, **kwargs)
        backbone.pooler.trainable = False  # unused: see BertClassifier
        self.num_labels = int(num_labels)
        self.dropout_rate = float(dropout)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy,
                                            name="dropout")
        self.classifier = self.head_dense(self.num_labels, "classifier")

    def call(self, inputs, training=None):
        sequence = self.backbone(inputs, training=training)["sequence_output"]
        logits = self.classifier(self.dropout(sequence, training=training))
        # float32 even under mixed precision: the softmax and loss need the range.
        return {"logits": ops.cast(logits, "float32")}

    def compute_loss_and_metrics(self, batch, training=False):
        """Returns (loss, {"accuracy"}): float32 scalars over the weighted positions."""
        logits = self(batch, training=training)["logits"]
        weights = batch["label_weights"]
        losses = keras.losses.sparse_categorical_crossentropy(batch["labels"], logits,
                                                              from_logits=True)
        correct = ops.equal(ops.argmax(logits, -1), ops.cast(batch["labels"], "int64"))
        return masked_mean(losses, weights), {"accuracy": masked_mean(correct, weights)}

    def task_config(self):
        return {"num_labels": self.num_labels, "dropout": self.dropout_rate}
