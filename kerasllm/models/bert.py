"""BERT (Devlin et al., 2019): the encoder backbone and the MLM + NSP pretrainer."""
import keras
from keras import ops

from kerasllm.layers import (BertEmbedding, MaskedLMHead, NextSentencePredictionHead,
                             TransformerEncoderBlock)
from kerasllm.models.configs import BertConfig


def dummy_text_inputs(seq_length=8):
    """A one-example batch of `seq_length` tokens: enough to create every weight."""
    ids = ops.zeros((1, seq_length), "int32")
    return {"token_ids": ids, "segment_ids": ids, "padding_mask": ops.ones_like(ids)}


@keras.saving.register_keras_serializable(package="kerasllm")
class BertEncoder(keras.Model):
    """Embeddings → `num_layers` encoder blocks → sequence and pooled outputs.

    Inputs: dict with
        token_ids: int [batch, seq]; segment_ids: int [batch, seq];
        padding_mask: int/bool [batch, seq], 1 = real token.
    Outputs: dict with
        sequence_output: float [batch, seq, hidden];
        pooled_output: float [batch, hidden], tanh(dense(first token)), the
            [CLS] summary used by sentence-level heads.
    """

    def __init__(self, config: BertConfig, **kwargs):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            config = BertConfig(**config)
        self.config = config
        init = keras.initializers.TruncatedNormal(stddev=config.initializer_range)
        self.embedding = BertEmbedding(
            config.vocab_size, config.hidden_size,
            max_sequence_length=config.max_sequence_length,
            type_vocab_size=config.type_vocab_size, dropout=config.dropout,
            layer_norm_epsilon=config.layer_norm_epsilon,
            initializer_range=config.initializer_range,
            dtype=self.dtype_policy, name="embedding")
        # One attribute per block, not a list: tf.train.Checkpoint does not follow
        # Keras' tracked lists, so a list of blocks would be missing from checkpoints.
        for i in range(config.num_layers):
            setattr(self, f"block_{i}", TransformerEncoderBlock(
                config.num_heads, config.intermediate_size, dropout=config.dropout,
                attention_dropout=config.attention_dropout, activation=config.activation,
                layer_norm_epsilon=config.layer_norm_epsilon, norm_first=config.norm_first,
                initializer_range=config.initializer_range,
                dtype=self.dtype_policy, name=f"block_{i}"))
        # Pre-LN stacks need a final LayerNorm; post-LN blocks end normalised.
        self.final_norm = (
            keras.layers.LayerNormalization(epsilon=config.layer_norm_epsilon,
                                            dtype=self.dtype_policy, name="final_norm")
            if config.norm_first else None)
        self.pooler = keras.layers.Dense(
            config.hidden_size, activation="tanh", kernel_initializer=init,
            dtype=self.dtype_policy, name="pooler")

    @property
    def blocks(self):
        """The encoder blocks, first to last."""
        return [getattr(self, f"block_{i}") for i in range(self.config.num_layers)]

    @property
    def token_embedding(self):
        return self.embedding.token_embedding

    def layer_depth(self, variable):
        """Where `variable` sits, counted from the input: 0 in the embeddings, i + 1
        in block i, num_layers + 1 above the blocks (final norm, pooler); None if it
        is not this encoder's. Layer-wise learning rates are set from it."""
        top = self.config.num_layers + 1
        stack = [(self.embedding, 0), *((b, i + 1) for i, b in enumerate(self.blocks)),
                 (self.final_norm, top), (self.pooler, top)]
        for layer, depth in stack:
            if layer is not None and any(variable is weight for weight in layer.weights):
                return depth
        return None

    def build_for_inputs(self, seq_length=8):
        """Creates every weight by running a dummy batch of `seq_length` tokens."""
        self(dummy_text_inputs(seq_length))
        return self

    def call(self, inputs, training=None):
        x = self.embedding(inputs["token_ids"], inputs.get("segment_ids"), training=training)
        padding_mask = inputs.get("padding_mask")
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return {"sequence_output": x, "pooled_output": self.pooler(x[:, 0, :])}

    def get_config(self):
        return {"config": self.config.to_dict(), "name": self.name,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def masked_mean(values, weights):
    """Weighted mean of `values`; 0 (not NaN) when every weight is 0."""
    weights = ops.cast(weights, "float32")
    return ops.sum(ops.cast(values, "float32") * weights) / ops.maximum(ops.sum(weights), 1.0)


@keras.saving.register_keras_serializable(package="kerasllm")
class BertPretrainer(keras.Model):
    """BERT pretraining: masked-language-model + next-sentence-prediction heads.

    Inputs: a batch dict as built by `kerasllm.data.pretraining`:
        token_ids, segment_ids, padding_mask: int [batch, seq];
        masked_positions, masked_ids: int [batch, predictions];
        masked_weights: float [batch, predictions] (0 marks padding predictions);
        next_sentence_labels: int [batch] (1 = B follows A).
    Outputs: dict with mlm_logits float32 [batch, predictions, vocab] and
        nsp_logits float32 [batch, 2].

    Loss = mean MLM cross-entropy over real predictions + mean NSP cross-entropy.
    """

    def __init__(self, encoder: BertEncoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        config = encoder.config
        self.mlm_head = MaskedLMHead(
            config.vocab_size, activation=config.activation,
            layer_norm_epsilon=config.layer_norm_epsilon,
            initializer_range=config.initializer_range,
            token_embedding=encoder.token_embedding,
            dtype=self.dtype_policy, name="mlm_head")
        self.nsp_head = NextSentencePredictionHead(
            initializer_range=config.initializer_range, dtype=self.dtype_policy,
            name="nsp_head")

    @classmethod
    def from_name(cls, name, **overrides):
        """A fresh pretrainer for a registered config, e.g. `from_name("bert_tiny")`."""
        from kerasllm.models import configs
        return cls(BertEncoder(configs.get(name).replace(**overrides)))

    def build_for_inputs(self, seq_length=8, num_predictions=2):
        """Creates every weight by running a dummy batch."""
        self(dummy_text_inputs(seq_length)
             | {"masked_positions": ops.zeros((1, num_predictions), "int32")})
        return self

    def call(self, inputs, training=None):
        outputs = self.encoder(inputs, training=training)
        return {
            "mlm_logits": self.mlm_head(outputs["sequence_output"], inputs["masked_positions"]),
            "nsp_logits": self.nsp_head(outputs["pooled_output"]),
        }

    def compute_loss_and_metrics(self, batch, training=False):
        """Returns (loss, metrics) for one batch: the loss is a float32 scalar
        (mean over this batch); metrics is a dict of float32 scalars."""
        outputs = self(batch, training=training)
        mlm_logits, nsp_logits = outputs["mlm_logits"], outputs["nsp_logits"]
        weights = batch["masked_weights"]
        mlm_losses = keras.losses.sparse_categorical_crossentropy(
            batch["masked_ids"], mlm_logits, from_logits=True)
        mlm_loss = masked_mean(mlm_losses, weights)
        nsp_loss = ops.mean(keras.losses.sparse_categorical_crossentropy(
            batch["next_sentence_labels"], nsp_logits, from_logits=True))
        mlm_correct = ops.equal(ops.argmax(mlm_logits, -1), ops.cast(batch["masked_ids"], "int64"))
        nsp_correct = ops.equal(ops.argmax(nsp_logits, -1),
                                ops.cast(batch["next_sentence_labels"], "int64"))
        metrics = {
            "mlm_loss": mlm_loss,
            "nsp_loss": nsp_loss,
            "mlm_accuracy": masked_mean(mlm_correct, weights),
            "nsp_accuracy": ops.mean(ops.cast(nsp_correct, "float32")),
        }
        return mlm_loss + nsp_loss, metrics

    def get_config(self):
        return {"encoder": keras.saving.serialize_keras_object(self.encoder),
                "name": self.name,
                "dtype": keras.dtype_policies.serialize(self.dtype_policy)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        return cls(**config)
