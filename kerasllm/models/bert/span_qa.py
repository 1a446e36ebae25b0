"""BERT for extractive question answering: the answer is a span of the context.

The input is "[CLS] question [SEP] context [SEP]" (context tokens have segment
id 1); the head scores every token as the answer's first and last token.
"""
import keras
import tensorflow as tf
from keras import ops

from kerasllm.errors import DataError
from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.bert.text_task import BertTextTask
from kerasllm.raw_text import text_batch


@keras.saving.register_keras_serializable(package="kerasllm")
class BertSpanQA(BertTextTask):
    """A BERT encoder and one Dense(2) layer giving start and end logits per token.

    Inputs: a batch dict with token_ids, segment_ids, padding_mask: int [batch, seq];
        for training also start_positions, end_positions: int32 [batch], the token
        indices of the answer's first and last piece.
    Outputs: dict with start_logits, end_logits: float32 [batch, seq].

    Loss = mean of the start and end cross-entropies (each over all positions).
    `max_answer_length` (in tokens) bounds the spans `best_spans` may return.
    """

    def __init__(self, backbone: BertEncoder, max_answer_length=30, **kwargs):
        super().__init__(backbone, **kwargs)
        backbone.pooler.trainable = False  # unused: see BertClassifier
        self.max_answer_length = int(max_answer_length)
        self.span_head = self.head_dense(2, "span_head")

    def call(self, inputs, training=None):
        sequence = self.backbone(inputs, training=training)["sequence_output"]
        # float32 even under mixed precision: the softmax and loss need the range.
        logits = ops.cast(self.span_head(sequence), "float32")
        return {"start_logits": logits[..., 0], "end_logits": logits[..., 1]}

    def compute_loss_and_metrics(self, batch, training=False):
        """Returns (loss, {"start_accuracy", "end_accuracy", "exact_match"}), float32
        scalars; exact_match counts examples whose start and end argmax are both right."""
        outputs = self(batch, training=training)
        losses, hits = [], []
        for name, positions in (("start", batch["start_positions"]),
                                ("end", batch["end_positions"])):
            logits = outputs[f"{name}_logits"]
            losses.append(ops.mean(keras.losses.sparse_categorical_crossentropy(
                positions, logits, from_logits=True)))
            hits.append(ops.equal(ops.argmax(logits, -1), ops.cast(positions, "int64")))
        start_hit, end_hit = hits
        metrics = {
            "start_accuracy": ops.mean(ops.cast(start_hit, "float32")),
            "end_accuracy": ops.mean(ops.cast(end_hit, "float32")),
            "exact_match": ops.mean(ops.cast(ops.logical_and(start_hit, end_hit), "float32")),
        }
        return (losses[0] + losses[1]) / 2.0, metrics

    def serving_signatures(self):
        """qa_signatures of this model."""
        from kerasllm.export.qa_signatures import qa_signatures  # it imports this module
        return qa_signatures(self, self.needs_tokenizer("answer"), self.sequence_length)

    def answer(self, questions, contexts):
        """{"answer", "start_offset", "end_offset", "score"} of each question (a string,
        or a list) about its context (see qa_signatures)."""
        questions, single = text_batch(questions, "questions")
        contexts = text_batch(contexts, "contexts")[0]
        if questions.shape != contexts.shape:
            raise DataError(f"{questions.shape[0]} questions but {contexts.shape[0]} contexts")
        return self.run_text_function("answer", {"question": questions, "context": contexts},
                                      single)

    def task_config(self):
        return {**super().task_config(), "max_answer_length": self.max_answer_length}


def context_mask(inputs, sep_id):
    """bool [batch, seq]: the context tokens (segment 1, neither [SEP] nor [PAD])."""
    return ((tf.cast(inputs["segment_ids"], tf.int32) == 1)
            & (tf.cast(inputs["padding_mask"], tf.int32) == 1)
            & (tf.cast(inputs["token_ids"], tf.int32) != sep_id))


def best_spans(start_logits, end_logits, allowed, max_answer_length):
    """The most probable answer span of each row, in TF graph ops (no XLA, no Python).

    Among spans start <= end < start + max_answer_length with both ends in `allowed`,
    picks the one maximising p(start) * p(end), each a softmax over allowed tokens.

    Args:
      start_logits, end_logits: float [batch, seq].
      allowed: bool [batch, seq], e.g. `context_mask`.
      max_answer_length: python int >= 1, the longest span in tokens.
    Returns:
      (starts, ends): int32 [batch], token indices, -1 where a row allows no token;
      scores: float32 [batch], p(start) * p(end) of the chosen span, 0 for no span.
    """
    # A large finite logit rather than -inf: a row with no allowed token must not
    # turn the softmax into NaN.
    def log_probs(logits):
        logits = tf.where(allowed, tf.cast(logits, tf.float32), -1e9)
        return tf.nn.log_softmax(logits, axis=-1)

    seq_length = tf.shape(start_logits)[1]
    span_scores = log_probs(start_logits)[:, :, None] + log_probs(end_logits)[:, None, :]
    # band_part refuses a band wider than the matrix: a batch padded only to its
    # longest input may be shorter than the longest answer allowed.
    within_length = tf.cast(tf.linalg.band_part(
        tf.ones([seq_length, seq_length]), 0,
        tf.minimum(max_answer_length - 1, seq_length - 1)), tf.bool)
    valid = within_length[None] & allowed[:, :, None] & allowed[:, None, :]
    flat = tf.reshape(tf.where(valid, span_scores, -float("inf")), [-1, seq_length ** 2])
    best = tf.argmax(flat, axis=-1, output_type=tf.int32)
    found = tf.reduce_any(allowed, axis=-1)
    starts = tf.where(found, best // seq_length, -1)
    ends = tf.where(found, best % seq_length, -1)
    scores = tf.where(found, tf.exp(tf.reduce_max(flat, axis=-1)), 0.0)
    return starts, ends, scores
