"""Permutation language modelling (XLNet, Yang et al., 2019) as a pretraining
objective for a BERT encoder."""
import keras
from keras import ops

from kerasllm.export.bert_signatures import bert_signatures
from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.bert.pretrainer import tied_lm_head
from kerasllm.models.bert.text_task import BertTextTask
from kerasllm.models.losses import masked_mean, sparse_cross_entropy


@keras.saving.register_keras_serializable(package="kerasllm")
class PermutationLanguageModel(BertTextTask):
    """Pretrains a BertEncoder to predict each window's tokens autoregressively in a
    random factorisation order, through two-stream self-attention
    (BertEncoder.two_stream): the content stream encodes the tokens seen so far,
    the query stream, which starts from one learned vector plus the position and
    segment embeddings, predicts the token at its position from the content of
    the tokens before it in the order, never its own. Both streams run through
    the encoder's own weights; the prediction head (MaskedLMHead, tied to the
    token embeddings) reads the query stream at the targets, the last 1/K of
    each order (partial prediction).

    Left out from XLNet: relative positional encodings (the encoder keeps its
    absolute position embeddings, which both streams add) and segment recurrence
    (Transformer-XL memory: each window is encoded on its own). Fine-tuning and
    export use `backbone`, the plain encoder, with ordinary full attention, as
    XLNet fine-tunes its content stream; the query stream's start vector and the
    head are pretraining-only.

    Inputs: a batch dict as kerasllm.data.permutation_lm.add_permutation_targets
    makes it:
        token_ids, segment_ids, padding_mask: int [batch, seq];
        content_mask, query_mask: int/bool [batch, seq, seq];
        target_positions, target_ids: int [batch, predictions];
        target_weights: float [batch, predictions] (0 marks padding targets).
    Outputs: dict with plm_logits float32 [batch, predictions, vocab].

    Loss = mean cross-entropy over the real targets.
    """

    def __init__(self, backbone: BertEncoder, **kwargs):
        super().__init__(backbone, **kwargs)
        config = backbone.config
        self.query_start = self.add_weight(
            name="query_start", shape=(config.hidden_size,),
            initializer=keras.initializers.TruncatedNormal(stddev=config.initializer_range))
        self.plm_head = tied_lm_head(backbone, self.dtype_policy, "plm_head")

    @classmethod
    def from_name(cls, name, **overrides):
        """A fresh model for a registered config, e.g. `from_name("bert_tiny")`."""
        from kerasllm.models import registry  # the registry imports this family
        return cls(BertEncoder(registry.get(name).replace(**overrides)))

    def serving_signatures(self):
        """bert_signatures of the encoder (no fill_mask: the PLM head reads the query
        stream, which only exists in pretraining)."""
        return bert_signatures(self.backbone, self.needs_tokenizer("embed"),
                               self.sequence_length)

    def dummy_inputs(self, seq_length):
        # Full masks and one target: enough to create every weight.
        masks = ops.ones((1, seq_length, seq_length), "bool")
        return super().dummy_inputs(seq_length) | {
            "content_mask": masks, "query_mask": masks,
            "target_positions": ops.zeros((1, 1), "int32")}

    def build(self, inputs_shape=None):
        # The two streams skip the pooler; built here all the same, the checkpoint
        # holds the whole encoder, which fine-tuning restores.
        self.backbone.build_for_inputs()
        self.plm_head.build((None, None, self.backbone.config.hidden_size))
        self.built = True

    def call(self, inputs, training=None):
        _, query = self.backbone.two_stream(inputs, self.query_start, training=training)
        return {"plm_logits": self.plm_head(query, inputs["target_positions"])}

    def compute_loss_and_metrics(self, batch, training=False):
        """Returns (loss, metrics) for one batch: the loss is a float32 scalar
        (mean over this batch's targets); metrics is a dict of float32 scalars."""
        logits = self(batch, training=training)["plm_logits"]
        weights = batch["target_weights"]
        scores = sparse_cross_entropy(batch["target_ids"], logits)
        loss = masked_mean(scores.loss, weights)
        return loss, {"plm_loss": loss, "plm_accuracy": masked_mean(scores.correct, weights)}
