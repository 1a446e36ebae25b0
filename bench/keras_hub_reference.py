"""keras-hub's BERT (BertBackbone + MaskedLMHead + an NSP dense) wrapped in the task
interface kerasllm's training loop drives, so both libraries train through one loop."""
import keras
import keras_hub
from keras_hub.src.layers.modeling.masked_lm_head import MaskedLMHead

from kerasllm.models.bert import masked_mean


class KerasHubBertPretrainer(keras.Model):
    """MLM + NSP on keras-hub's BertBackbone; same losses as kerasllm.BertPretrainer."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.backbone = keras_hub.models.BertBackbone(
            vocabulary_size=config.vocab_size, num_layers=config.num_layers,
            num_heads=config.num_heads, hidden_dim=config.hidden_size,
            intermediate_dim=config.intermediate_size, dropout=config.dropout,
            max_sequence_length=config.max_sequence_length)
        self.mlm_head = MaskedLMHead(
            vocabulary_size=config.vocab_size,
            token_embedding=self.backbone.token_embedding,
            intermediate_activation="gelu", layer_norm_epsilon=config.layer_norm_epsilon)
        self.nsp_head = keras.layers.Dense(2)

    def build_for_inputs(self, seq_length=8, num_predictions=2):
        ids = keras.ops.zeros((1, seq_length), "int32")
        self({"token_ids": ids, "segment_ids": ids, "padding_mask": keras.ops.ones_like(ids),
              "masked_positions": keras.ops.zeros((1, num_predictions), "int32")})
        return self

    def call(self, batch, training=None):
        outputs = self.backbone(
            {k: batch[k] for k in ("token_ids", "segment_ids", "padding_mask")},
            training=training)
        return {
            "mlm_logits": self.mlm_head(outputs["sequence_output"], batch["masked_positions"]),
            "nsp_logits": self.nsp_head(outputs["pooled_output"]),
        }

    def compute_loss_and_metrics(self, batch, training=False):
        outputs = self(batch, training=training)
        mlm = masked_mean(keras.losses.sparse_categorical_crossentropy(
            batch["masked_ids"], outputs["mlm_logits"], from_logits=True),
            batch["masked_weights"])
        nsp = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(
            batch["next_sentence_labels"], outputs["nsp_logits"], from_logits=True))
        return mlm + nsp, {"mlm_loss": mlm, "nsp_loss": nsp}
