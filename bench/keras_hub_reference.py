"""keras-hub's BERT and GPT-2 models wrapped in the task interface kerasllm's training
loop drives (`build_for_inputs()`, `compute_loss_and_metrics(batch, training)`), so
both libraries train through one loop."""
import keras
import keras_hub
from keras_hub.src.layers.modeling.masked_lm_head import MaskedLMHead

from kerasllm.models.bert.classifier import BertClassifier
from kerasllm.models.losses import masked_mean

TEXT_INPUTS = ("token_ids", "segment_ids", "padding_mask")


def check_expressible(config, expected, keras_hub_class):
    """ValueError naming the fields of a kerasllm `config` whose values differ from
    `expected` ({field: value}), which `keras_hub_class` cannot express."""
    different = {k: getattr(config, k) for k, v in expected.items() if getattr(config, k) != v}
    if different:
        raise ValueError(f"keras-hub's {keras_hub_class} cannot have {different}")


def dummy_text_inputs(seq_length):
    """A one-example batch of `seq_length` tokens, to create every weight."""
    ids = keras.ops.zeros((1, seq_length), "int32")
    return {"token_ids": ids, "segment_ids": ids, "padding_mask": keras.ops.ones_like(ids)}


def keras_hub_backbone(config):
    """keras-hub's BertBackbone at a kerasllm BertConfig (keras-hub fixes the
    LayerNorm epsilon at 1e-12 and uses one dropout rate for everything)."""
    return keras_hub.models.BertBackbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_layers,
        num_heads=config.num_heads, hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size, dropout=config.dropout,
        max_sequence_length=config.max_sequence_length,
        num_segments=config.type_vocab_size)


def text_inputs(batch):
    """The three inputs keras-hub's BERT takes, without the task's other keys."""
    return {k: batch[k] for k in TEXT_INPUTS}


class KerasHubBertPretrainer(keras.Model):
    """MLM + NSP on keras-hub's BertBackbone; same losses as kerasllm.BertPretrainer."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.backbone = keras_hub_backbone(config)
        self.mlm_head = MaskedLMHead(
            vocabulary_size=config.vocab_size,
            token_embedding=self.backbone.token_embedding,
            intermediate_activation="gelu", layer_norm_epsilon=config.layer_norm_epsilon)
        self.nsp_head = keras.layers.Dense(2)

    def build_for_inputs(self, seq_length=8, num_predictions=2):
        self(dummy_text_inputs(seq_length)
             | {"masked_positions": keras.ops.zeros((1, num_predictions), "int32")})
        return self

    def call(self, batch, training=None):
        outputs = self.backbone(text_inputs(batch), training=training)
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


class KerasHubBertClassifier(keras.Model):
    """keras-hub's BertTextClassifier (no preprocessor: [CLS] pooler, dropout, Dense)
    behind kerasllm.BertClassifier's interface: same logits dict, same loss and
    accuracy (the very method of kerasllm.BertClassifier, which only calls the model)."""

    def __init__(self, config, num_classes, dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        # What BertClassifier's loss reads besides the logits.
        self.num_classes, self.label_smoothing = num_classes, 0.0
        self.classifier = keras_hub.models.BertTextClassifier(
            keras_hub_backbone(config), num_classes, preprocessor=None, dropout=dropout)

    def build_for_inputs(self, seq_length=8):
        self(dummy_text_inputs(seq_length))
        return self

    def call(self, batch, training=None):
        logits = self.classifier(text_inputs(batch), training=training)
        return {"logits": keras.ops.cast(logits, "float32")}

    compute_loss_and_metrics = BertClassifier.compute_loss_and_metrics


def keras_hub_gpt2_causal_lm(config):
    """keras-hub's GPT2CausalLM (no preprocessor) at a GPT-2-style kerasllm GptConfig.

    keras-hub fixes what the config may vary: LayerNorm epsilon 1e-5, tanh GELU,
    learned positions, biases, the output tied to the token table, and one dropout
    rate for the embeddings, the attention probabilities and the residual branches.
    """
    expected = {"position_embedding": "learned", "norm": "layer_norm", "norm_epsilon": 1e-5,
                "feed_forward": "gelu_mlp", "use_bias": True, "tie_embeddings": True,
                "num_key_value_heads": config.num_heads,
                "attention_dropout": config.dropout}
    check_expressible(config, expected, "GPT2Backbone")
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=config.vocab_size, num_layers=config.num_layers,
        num_heads=config.num_heads, hidden_dim=config.hidden_size,
        intermediate_dim=config.intermediate_size, dropout=config.dropout,
        max_sequence_length=config.max_sequence_length)
    return keras_hub.models.GPT2CausalLM(backbone, preprocessor=None)


class KerasHubGptCausalLM(keras.Model):
    """keras-hub's GPT2CausalLM behind kerasllm.GptCausalLM's training interface (the
    same logits dict, loss and metrics: accuracy, perplexity), trained as keras-hub
    trains it: GPT2CausalLMPreprocessor's shift (the model reads tokens[:, :-1] and
    predicts tokens[:, 1:], weighted by padding_mask[:, 1:]) and keras'
    sparse categorical cross-entropy, GPT2CausalLM's default loss. `causal_lm` is
    the keras-hub model itself, e.g. for its `generate`."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.causal_lm = keras_hub_gpt2_causal_lm(config)

    def build_for_inputs(self, seq_length=8):
        ids = keras.ops.zeros((1, seq_length), "int32")
        self({"token_ids": ids, "padding_mask": keras.ops.ones_like(ids)})
        return self

    def call(self, batch, training=None):
        logits = self.causal_lm({"token_ids": batch["token_ids"],
                                 "padding_mask": batch["padding_mask"]}, training=training)
        return {"logits": keras.ops.cast(logits, "float32")}

    def compute_loss_and_metrics(self, batch, training=False):
        inputs = {k: batch[k][:, :-1] for k in ("token_ids", "padding_mask")}
        logits = self(inputs, training=training)["logits"]
        targets, weights = batch["token_ids"][:, 1:], batch["padding_mask"][:, 1:]
        loss = masked_mean(keras.losses.sparse_categorical_crossentropy(
            targets, logits, from_logits=True), weights)
        correct = keras.ops.equal(keras.ops.argmax(logits, -1),
                                  keras.ops.cast(targets, "int64"))
        return loss, {"accuracy": masked_mean(correct, weights),
                      "perplexity": keras.ops.exp(loss)}
