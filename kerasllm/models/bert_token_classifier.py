"""BERT with a per-token classification head, for tagging words (e.g. named entities)."""
import keras
from keras import ops

from kerasllm.models.bert import BertEncoder, dummy_text_inputs, masked_mean


@keras.saving.register_keras_serializable(package="kerasllm")
class BertTokenClassifier(keras.Model):
    """A BERT encoder, dropout and one Dense layer scoring `num_labels` labels per token.

    Inputs: a batch dict with token_ids, segment_ids, padding_mask: int [batch, seq];
        for training also labels: int32 [batch, seq] and label_weights: float32
        [batch, seq], 1 on the first piece of each word and 0 on later pieces,
        [CLS], [SEP] and [PAD] (the label of a word is read at its first piece).
    Outputs: dict with logits float32 [batch, seq, num_labels].

    Loss = cross-entropy averaged over the weighted positions.
    """

    def __init__(self, encoder: BertEncoder, num_labels, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.num_labels = int(num_labels)
        self.dropout_rate = float(dropout)
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=self.dtype_policy,
                                            name="dropout")
        self.classifier = keras.layers.Dense(
            self.num_labels,
            kernel_initializer=keras.initializers.TruncatedNormal(
                stddev=encoder.config.initializer_range),
            dtype=self.dtype_policy, name="classifier")

    def build_for_inputs(self, seq_length=8):
        """Creates every weight by running a dummy batch of `seq_length` tokens."""
        self(dummy_text_inputs(seq_length))
        return self

    def call(self, inputs, training=None):
        sequence = self.encoder(inputs, training=training)["sequence_output"]
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

    def get_config(self):
        return {"encoder": keras.saving.serialize_keras_object(self.encoder),
                "num_labels": self.num_labels, "dropout": self.dropout_rate,
                "name": self.name,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
