"""BERT pretraining: the masked-language-model head, with or without next-sentence prediction."""
import keras
import tensorflow as tf
from keras import ops

from kerasllm.data.batching import trim_padding
from kerasllm.data.bert_pretraining import make_masking_fn
from kerasllm.errors import DataError
from kerasllm.export.bert_signatures import bert_signatures
from kerasllm.layers import MaskedLMHead, NextSentencePredictionHead
from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.bert.text_task import BertTextTask
from kerasllm.models.losses import masked_mean, sparse_cross_entropy
from kerasllm.raw_text import text_batch


def tied_lm_head(backbone, dtype, name):
    """A MaskedLMHead sized and initialised for `backbone` (a BertEncoder), its
    output projection tied to the encoder's token embeddings."""
    config = backbone.config
    return MaskedLMHead(
        config.vocab_size, activation=config.activation,
        layer_norm_epsilon=config.layer_norm_epsilon,
        initializer_range=config.initializer_range,
        token_embedding=backbone.token_embedding, dtype=dtype, name=name)


@keras.saving.register_keras_serializable(package="kerasllm")
class BertPretrainer(BertTextTask):
    """BERT pretraining: a masked-language-model head and, with
    next_sentence_prediction (BERT's recipe), a next-sentence-prediction head;
    without it, RoBERTa's masked LM alone (batches from
    `kerasllm.data.full_sentences`).

    Inputs: a batch dict as built by `kerasllm.data.bert_pretraining`:
        token_ids, segment_ids, padding_mask: int [batch, seq];
        masked_positions, masked_ids: int [batch, predictions];
        masked_weights: float [batch, predictions] (0 marks padding predictions);
        next_sentence_labels: int [batch] (1 = B follows A), with NSP only.
    Outputs: dict with mlm_logits float32 [batch, predictions, vocab] and, with
        NSP, nsp_logits float32 [batch, 2].

    Loss = mean MLM cross-entropy over real predictions (+ mean NSP cross-entropy).

    With a tokenizer, on raw text, through its export's functions
    (kerasllm.export.bert_signatures): `embed(texts)` (sentence embeddings, or every
    encoder output with return_details) and `fill_mask(texts)` (the MLM head's
    best tokens for each [MASK]: meaningful once the head is trained, e.g. loaded
    from a pretrain_bert run; an imported encoder such as MiniLM brings none).
    """

    def __init__(self, backbone: BertEncoder, next_sentence_prediction=True, **kwargs):
        super().__init__(backbone, **kwargs)
        self.next_sentence_prediction = bool(next_sentence_prediction)
        self.mlm_head = tied_lm_head(backbone, self.dtype_policy, "mlm_head")
        self.nsp_head = NextSentencePredictionHead(
            initializer_range=backbone.config.initializer_range, dtype=self.dtype_policy,
            name="nsp_head") if self.next_sentence_prediction else None

    def task_config(self):
        return super().task_config() | {"next_sentence_prediction": self.next_sentence_prediction}

    @classmethod
    def from_name(cls, name, next_sentence_prediction=True, **overrides):
        """A fresh pretrainer for a registered config, e.g. `from_name("bert_tiny")`."""
        from kerasllm.models import registry  # the registry imports this family
        return cls(BertEncoder(registry.get(name).replace(**overrides)),
                   next_sentence_prediction=next_sentence_prediction)

    def preprocess(self, x, y=None):
        """Texts string [B] -> a masked pretraining batch: with NSP each text split
        in half at its middle token, A = the first half and B = the second
        (is-next) for even rows, B = the next row's second half (not next) for odd
        ones; without NSP each text whole; 15% of the tokens masked as in
        kerasllm.data.bert_pretraining, masks drawn anew each batch; padded to the
        batch's longest."""
        if y is not None:
            raise DataError("BERT pretraining reads texts alone; pass no labels")
        tokenizer = self.needs_tokenizer("fit")
        ids = tf.cast(tokenizer.tokenize(x), tf.int32)
        masks = make_masking_fn(tokenizer, max_seq_length=self.sequence_length)
        seed = tf.random.uniform([2], maxval=2 ** 31 - 1, dtype=tf.int64)
        if not self.next_sentence_prediction:
            return trim_padding(masks((ids,), seed), length_multiple=1)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        positions = tf.ragged.range(lengths)
        halves = tf.expand_dims(lengths // 2, 1)
        first, second = (tf.ragged.boolean_mask(ids, test(positions, halves))
                         for test in (tf.less, tf.greater_equal))
        rows = tf.range(tf.size(lengths))
        is_next = tf.cast(rows % 2 == 0, tf.int32)
        partner = tf.where(is_next == 1, rows, (rows + 1) % tf.maximum(tf.size(lengths), 1))
        batch = masks((first, tf.gather(second, partner)), seed, is_next)
        return trim_padding(batch, length_multiple=1)

    def serving_signatures(self, top_k=5):
        """bert_signatures of the encoder and MLM head (fill_mask's best `top_k`)."""
        return bert_signatures(self.backbone, self.needs_tokenizer("embed"),
                               self.sequence_length, mlm_head=self.mlm_head, top_k=top_k)

    def embed(self, texts, text_b=None, return_details=False):
        """Sentence embeddings float32 [N, H] (unit length, the mean of the real
        tokens' outputs) of texts (a string, or a list; [H] for one string), or of
        (text, text_b) pairs; with return_details every output of the signature
        (sequence_output, pooled_output, sentence_embedding, token_ids,
        padding_mask)."""
        texts, single = text_batch(texts)
        inputs, name = {"text": texts}, "serving_default"
        if text_b is not None:
            inputs["text_b"], name = text_batch(text_b, "text_b")[0], "encode_pair"
        outputs = self.run_text_function(name, inputs, single)
        return outputs if return_details else outputs["sentence_embedding"]

    def fill_mask(self, texts, top_k=5):
        """For each [MASK] of each text (a string, or a list): {"mask_positions",
        "top_tokens", "top_ids", "top_scores"} as the fill_mask signature returns them."""
        texts, single = text_batch(texts)
        return self.run_text_function("fill_mask", {"text": texts}, single, top_k=top_k)

    def dummy_inputs(self, seq_length):
        # Two masked positions: the MLM head needs some to create its weights.
        return super().dummy_inputs(seq_length) | {
            "masked_positions": ops.zeros((1, 2), "int32")}

    def call(self, inputs, training=None):
        outputs = self.backbone(inputs, training=training)
        logits = {
            "mlm_logits": self.mlm_head(outputs["sequence_output"], inputs["masked_positions"])}
        if self.nsp_head is not None:
            logits["nsp_logits"] = self.nsp_head(outputs["pooled_output"])
        return logits

    def compute_loss_and_metrics(self, batch, training=False):
        """Returns (loss, metrics) for one batch: the loss is a float32 scalar
        (mean over this batch); metrics is a dict of float32 scalars."""
        outputs = self(batch, training=training)
        weights = batch["masked_weights"]
        mlm = sparse_cross_entropy(batch["masked_ids"], outputs["mlm_logits"])
        mlm_loss = masked_mean(mlm.loss, weights)
        mlm_metrics = {"mlm_loss": mlm_loss, "mlm_accuracy": masked_mean(mlm.correct, weights)}
        if self.nsp_head is None:
            return mlm_loss, mlm_metrics
        nsp_logits = outputs["nsp_logits"]
        nsp_loss = ops.mean(keras.losses.sparse_categorical_crossentropy(
            batch["next_sentence_labels"], nsp_logits, from_logits=True))
        nsp_correct = ops.equal(ops.argmax(nsp_logits, -1),
                                ops.cast(batch["next_sentence_labels"], "int64"))
        return mlm_loss + nsp_loss, mlm_metrics | {
            "nsp_loss": nsp_loss, "nsp_accuracy": ops.mean(ops.cast(nsp_correct, "float32"))}
