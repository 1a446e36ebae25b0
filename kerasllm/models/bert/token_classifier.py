"""BERT with a per-token classification head, for tagging words (e.g. named entities)."""
import keras
from keras import ops

from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.bert.text_task import BertTextTask
from kerasllm.models.losses import masked_mean
from kerasllm.raw_text import text_batch


@keras.saving.register_keras_serializable(package="kerasllm")
class BertTokenClassifier(BertTextTask):
    """A BERT encoder, dropout and one Dense layer scoring `num_labels` labels per token.

    Inputs: a batch dict with token_ids, segment_ids, padding_mask: int [batch, seq];
        for training also labels: int32 [batch, seq] and label_weights: float32
        [batch, seq], 1 on the first piece of each word and 0 on later pieces,
        [CLS], [SEP] and [PAD] (the label of a word is read at its first piece).
    Outputs: dict with logits float32 [batch, seq, num_labels].

    Loss = cross-entropy averaged over the weighted positions.
    """

    def __init__(self, backbone: BertEncoder, num_labels, dropout=0.1, label_names=None,
                 **kwargs):
        super().__init__(backbone, **kwargs)
        backbone.pooler.trainable = False  # unused: see BertClassifier
        self.num_labels = int(num_labels)
        self.label_names = [str(name) for name in (label_names or range(self.num_labels))]
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

    def serving_signatures(self):
        """tagging_signatures of this tagger and its label names."""
        from kerasllm.export.tagging_signatures import tagging_signatures
        return tagging_signatures(self, self.needs_tokenizer("tag"), self.label_names,
                                  self.sequence_length)

    def tag(self, texts):
        """{"words", "labels", "start_offsets", "end_offsets"} of each text (a string,
        or a list), one entry per word (see tagging_signatures)."""
        texts, single = text_batch(texts)
        return self.run_text_function("tag", {"text": texts}, single)

    def task_config(self):
        return {**super().task_config(), "num_labels": self.num_labels,
                "dropout": self.dropout_rate, "label_names": self.label_names}
