"""The fine-tuning tasks: for each, how its files are read, which model it trains,
how its batches are made, how it is scored and which signatures it exports.

    task      predicts                        model                scores (best by)
    classify  a label per text or text pair   BertClassifier       accuracy, macro-F1 (accuracy)
    tag       a label per word                BertTokenClassifier  accuracy, macro-F1 over
                                                                   words (accuracy)
    qa        the answer span of a context    BertSpanQA           exact match, token F1 (F1)
"""
from absl import logging

from kerasllm.data.batching import packed_dataset, packed_dataset_fn
from kerasllm.data.labeled_text import (classification_dataset, classification_dataset_fn,
                                        read_labeled_text)
from kerasllm.data.qa_examples import read_qa_examples, span_qa_inputs
from kerasllm.data.tagged_text import read_tagged_text, tagging_inputs
from kerasllm.errors import DataError
from kerasllm.evaluation.answers import AnswerEvaluator
from kerasllm.evaluation.labels import LabelEvaluator
from kerasllm.export.classifier_signatures import classifier_signatures
from kerasllm.export.qa_signatures import qa_signatures
from kerasllm.export.tagging_signatures import tagging_signatures
from kerasllm.models.bert.classifier import BertClassifier
from kerasllm.models.bert.span_qa import BertSpanQA
from kerasllm.models.bert.token_classifier import BertTokenClassifier

# Evaluation runs one traced (never XLA-compiled) function for every batch length,
# so its batches are exactly as long as their longest example.
EVAL_LENGTH_MULTIPLE = 1


class FineTuningTask:
    """What a trainer needs to know about one task; subclasses fill it in.

    `best_metric` names the eval score that picks the best epoch; `has_labels`
    says whether examples carry labels from a label set.
    """

    name = None
    best_metric = None
    has_labels = True

    def read(self, path, label_names=None):
        """(examples, label_names) of one file; label_names () for a task without
        labels. `label_names` None: the file's own label set."""
        raise NotImplementedError

    def training_examples(self, examples, tokenizer, max_seq_length):
        """The examples as the training dataset reads them (len() is the number the
        epochs count), e.g. tokenized ahead; reports what cannot be trained on."""
        return examples

    def dataset_fn(self, examples, tokenizer, *, max_seq_length, global_batch_size, seed,
                   length_multiple):
        """A kerasllm.training.loop.train dataset_fn over training_examples(), its
        batch lengths `length_multiple` tokens apart (see
        kerasllm.data.batching.trim_padding)."""
        raise NotImplementedError

    def build_model(self, encoder, label_names):
        """The task model around a pretrained BertEncoder."""
        raise NotImplementedError

    def evaluator(self, examples, tokenizer, label_names, *, max_seq_length, batch_size):
        """model -> {score name: float} on the eval examples (a score function of
        kerasllm.evaluation.validation.Validation)."""
        raise NotImplementedError

    def signatures(self, model, tokenizer, label_names, max_seq_length):
        """{name: tf.function} to export, serving_default included."""
        raise NotImplementedError

    def metadata(self):
        """The task's own settings, for the export's metadata file."""
        return {}


class ClassificationTask(FineTuningTask):
    """One label per text or text pair (kerasllm.data.labeled_text files).

    label_confidence: train toward each example's confidence (a soft target);
    False: every label as certain. label_smoothing: see BertClassifier.
    """

    name = "classify"
    best_metric = "accuracy"

    def __init__(self, pooling, dropout, label_confidence=True, label_smoothing=0.0):
        self.pooling, self.dropout = pooling, dropout
        self.label_confidence, self.label_smoothing = label_confidence, label_smoothing

    def read(self, path, label_names=None):
        return read_labeled_text(path, label_names)

    def training_examples(self, examples, tokenizer, max_seq_length):
        if self.label_confidence:
            return examples
        return [example._replace(confidence=1.0) for example in examples]

    def dataset_fn(self, examples, tokenizer, *, max_seq_length, global_batch_size, seed,
                   length_multiple):
        return classification_dataset_fn(examples, tokenizer, max_seq_length=max_seq_length,
                                          global_batch_size=global_batch_size, seed=seed,
                                          length_multiple=length_multiple)

    def build_model(self, encoder, label_names):
        return BertClassifier(encoder, len(label_names), pooling=self.pooling,
                              dropout=self.dropout, label_smoothing=self.label_smoothing)

    def evaluator(self, examples, tokenizer, label_names, *, max_seq_length, batch_size):
        return LabelEvaluator(
            classification_dataset(examples, tokenizer, max_seq_length=max_seq_length,
                                   batch_size=batch_size, training=False,
                                   length_multiple=EVAL_LENGTH_MULTIPLE),
            len(label_names))

    def signatures(self, model, tokenizer, label_names, max_seq_length):
        return classifier_signatures(model, tokenizer, label_names, max_seq_length)

    def metadata(self):
        return {"pooling": self.pooling, "label_confidence": self.label_confidence,
                "label_smoothing": self.label_smoothing}


def _tagging_inputs(examples, tokenizer, max_seq_length, role):
    """tagging_inputs, logging how many of the `role` ("training", "eval") words
    go without a label."""
    inputs = tagging_inputs(examples, tokenizer, max_seq_length)
    if inputs.num_tagged < inputs.num_words:
        logging.warning("%d of %d %s words are cut off by max_seq_length=%d (or have no "
                        "WordPiece) and are neither trained on nor scored",
                        inputs.num_words - inputs.num_tagged, inputs.num_words, role,
                        max_seq_length)
    return inputs


class TokenizedAheadTask(FineTuningTask):
    """A task whose training_examples are PackedExamples, tokenized and packed once
    before training (which also counts what does not fit)."""

    def dataset_fn(self, examples, tokenizer, *, max_seq_length, global_batch_size, seed,
                   length_multiple):
        return packed_dataset_fn(examples, pad_id=tokenizer.pad_id,
                                 max_seq_length=max_seq_length,
                                 global_batch_size=global_batch_size, seed=seed,
                                 length_multiple=length_multiple)


class TaggingTask(TokenizedAheadTask):
    """One label per word (kerasllm.data.tagged_text files); scored on every word's
    first piece, the piece the `tag` signature reads."""

    name = "tag"
    best_metric = "accuracy"

    def __init__(self, dropout):
        self.dropout = dropout

    def read(self, path, label_names=None):
        return read_tagged_text(path, label_names)

    def training_examples(self, examples, tokenizer, max_seq_length):
        return _tagging_inputs(examples, tokenizer, max_seq_length, "training").examples

    def build_model(self, encoder, label_names):
        return BertTokenClassifier(encoder, len(label_names), dropout=self.dropout)

    def evaluator(self, examples, tokenizer, label_names, *, max_seq_length, batch_size):
        inputs = _tagging_inputs(examples, tokenizer, max_seq_length, "eval")
        return LabelEvaluator(
            packed_dataset(inputs.examples, pad_id=tokenizer.pad_id,
                           max_seq_length=max_seq_length, batch_size=batch_size,
                           training=False, length_multiple=EVAL_LENGTH_MULTIPLE),
            len(label_names))

    def signatures(self, model, tokenizer, label_names, max_seq_length):
        return tagging_signatures(model, tokenizer, label_names, max_seq_length)


class SpanQATask(TokenizedAheadTask):
    """The answer is a span of the context (kerasllm.data.qa_examples files);
    scored on the answer text the `answer` signature returns."""

    name = "qa"
    best_metric = "f1"
    has_labels = False

    def __init__(self, max_answer_length):
        self.max_answer_length = max_answer_length

    def read(self, path, label_names=None):
        return read_qa_examples(path), ()

    def training_examples(self, examples, tokenizer, max_seq_length):
        inputs = span_qa_inputs(examples, tokenizer, max_seq_length)
        skipped = int((~inputs.fits).sum())
        if skipped == len(examples):
            raise DataError(f"no training answer lies within max_seq_length={max_seq_length} "
                            "tokens of question and context; use a larger max_seq_length")
        if skipped:
            logging.warning("%d of %d training examples skipped: their answer lies beyond "
                            "max_seq_length=%d tokens of question and context", skipped,
                            len(examples), max_seq_length)
        return inputs.examples.where(inputs.fits)

    def build_model(self, encoder, label_names):
        del label_names  # the span is all there is to predict
        return BertSpanQA(encoder, max_answer_length=self.max_answer_length)

    def evaluator(self, examples, tokenizer, label_names, *, max_seq_length, batch_size):
        del label_names
        unanswerable = int((~span_qa_inputs(examples, tokenizer, max_seq_length).fits).sum())
        if unanswerable:
            logging.warning("%d of %d eval answers lie beyond max_seq_length=%d tokens of "
                            "question and context; they are scored all the same", unanswerable,
                            len(examples), max_seq_length)
        return AnswerEvaluator(examples, tokenizer, max_seq_length, batch_size)

    def signatures(self, model, tokenizer, label_names, max_seq_length):
        del label_names
        return qa_signatures(model, tokenizer, max_seq_length)

    def metadata(self):
        return {"max_answer_length": self.max_answer_length}
