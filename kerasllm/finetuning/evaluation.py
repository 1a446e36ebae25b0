"""Scoring a model on held-out examples after each fine-tuning epoch, and keeping
the weights of the best epoch."""
import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from kerasllm.export.qa_signatures import qa_signatures
from kerasllm.finetuning.scores import answer_scores, classification_scores


def format_scores(scores):
    """`accuracy 0.8120  macro_f1 0.8051`, in the dict's order."""
    return "  ".join(f"{name} {value:.4f}" for name, value in scores.items())


class LabelEvaluator:
    """Accuracy and macro-F1 of a model's argmax labels (see classification_scores).

    `dataset` yields model inputs with int labels: one per example for a
    BertClassifier (labels [B], logits [B, C]), or one per token for a
    BertTokenClassifier (labels [B, S], logits [B, S, C]), where only the
    positions with label_weights > 0 (each word's first piece) are scored.
    """

    def __init__(self, dataset, num_labels):
        self.dataset = dataset
        self.num_labels = num_labels
        self._model, self._predict = None, None

    def __call__(self, model):
        if model is not self._model:
            # One graph for every batch length (batches are trimmed to their longest
            # example): compiling each length with XLA would cost more than it saves.
            self._model, self._predict = model, tf.function(
                lambda inputs: tf.argmax(model(inputs, training=False)["logits"], -1),
                reduce_retracing=True)
        labels, predictions = [], []
        for batch in self.dataset:
            gold = batch.pop("labels").numpy()
            weights = batch.pop("label_weights", None)
            predicted = self._predict(batch).numpy()
            if weights is not None:
                scored = weights.numpy() > 0
                gold, predicted = gold[scored], predicted[scored]
            labels.append(gold.ravel())
            predictions.append(predicted.ravel())
        return classification_scores(np.concatenate(labels), np.concatenate(predictions),
                                     self.num_labels)


class AnswerEvaluator:
    """Exact match and token F1 (see answer_scores) of a BertSpanQA's answers.

    The answers come from the same function the `answer` signature exports, so
    they are what a server would return: whole words of the context, from the
    input trimmed to `max_seq_length` tokens.
    """

    def __init__(self, examples, tokenizer, max_seq_length, batch_size):
        self.examples = examples
        self.tokenizer, self.max_seq_length = tokenizer, max_seq_length
        self.batch_size = batch_size
        self._model, self._answer = None, None

    def __call__(self, model):
        if model is not self._model:
            self._model = model
            self._answer = qa_signatures(model, self.tokenizer, self.max_seq_length)["answer"]
        predictions = []
        for start in range(0, len(self.examples), self.batch_size):
            batch = self.examples[start:start + self.batch_size]
            answers = self._answer(tf.constant([e.question for e in batch]),
                                   tf.constant([e.context for e in batch]))["answer"]
            predictions += [a.decode("utf-8", "replace") for a in answers.numpy()]
        return answer_scores(predictions, [e.answer for e in self.examples])


class EpochEvaluator:
    """Scores the model after every epoch and keeps the weights of the best one.

    With a `directory`, every epoch's scores and the best epoch's weights are kept
    there too (`eval_history.json`, `best_epoch-<epoch>.weights.h5`; the JSON is
    replaced last, by rename, so it always names a complete weights file), and a
    resumed run's epochs compete with those of the process that ran before. The
    weights of the best epoch before the newest one are kept as well: an epoch
    is scored before its checkpoint is written, so a crash in between resumes
    at the epoch before, where that earlier best is the best again.

    Args:
      score: model -> {score name: float}, e.g. a LabelEvaluator.
      best_metric: the score whose highest value picks the best epoch.
      directory: optional; where the history and the best weights persist.
      completed_epochs: epochs the resumed checkpoint holds; records of later
        epochs (scored before a crash, then trained again) are dropped.
    """

    HISTORY = "eval_history.json"

    def __init__(self, score, best_metric, directory=None, completed_epochs=0):
        self.score, self.best_metric, self.directory = score, best_metric, directory
        self.history = []  # (epoch, scores)
        self.best = None  # (epoch, scores)
        self._best_weights = None  # the best epoch's weights, when this process scored it
        self._replaced_best = None  # the epoch that was best before self.best
        if directory:
            self._load(completed_epochs)

    def _load(self, completed_epochs):
        path = os.path.join(self.directory, self.HISTORY)
        if not os.path.exists(path):
            return
        with open(path) as f:
            state = json.load(f)
        self.history = [(epoch, scores) for epoch, scores in state["history"]
                        if epoch <= completed_epochs]
        # The best scored epoch whose weights are kept (see _save): the best of
        # all, or, if that one was dropped, the best before it. Ties go to the
        # earlier epoch, as in end_of_epoch.
        kept = [(epoch, scores) for epoch, scores in self.history
                if os.path.exists(self._weights_path(epoch))]
        self.best = max(kept, key=lambda record: record[1][self.best_metric], default=None)
        if state["best_epoch"] > completed_epochs:
            logging.warning("the best epoch so far (%d) is newer than the checkpoint resumed "
                            "(epoch %d); the best before it (%s) takes its place",
                            state["best_epoch"], completed_epochs,
                            self.best[0] if self.best else "none")
        logging.info("eval history from earlier runs: %s", self.history)

    def _weights_path(self, epoch):
        return os.path.join(self.directory, f"best_epoch-{epoch}.weights.h5")

    def _save(self, model, new_best):
        if new_best:
            model.save_weights(self._weights_path(self.best[0]))
        path = os.path.join(self.directory, self.HISTORY)
        with open(path + ".tmp", "w") as f:
            json.dump({"history": self.history,
                       "best_epoch": self.best[0]}, f, indent=1)
        os.replace(path + ".tmp", path)
        keep = {os.path.basename(self._weights_path(epoch))
                for epoch in (self.best[0], self._replaced_best) if epoch is not None}
        for name in os.listdir(self.directory):
            if name.startswith("best_epoch-") and name.endswith(".weights.h5") \
                    and name not in keep:
                os.remove(os.path.join(self.directory, name))

    def end_of_epoch(self, epoch, model):
        scores = self.score(model)
        self.history.append((epoch, scores))
        logging.info("epoch %d eval: %s", epoch, format_scores(scores))
        new_best = (self.best is None
                    or scores[self.best_metric] > self.best[1][self.best_metric])
        if new_best:
            self._replaced_best = self.best[0] if self.best else None
            self.best, self._best_weights = (epoch, scores), model.get_weights()
        if self.directory:
            self._save(model, new_best)

    def restore_best(self, model):
        """Gives `model` the best epoch's weights; returns (epoch, scores), or None
        if no epoch was scored."""
        if self.best is None:
            return None
        if self._best_weights is not None:
            model.set_weights(self._best_weights)
        else:
            model.load_weights(self._weights_path(self.best[0]))
        return self.best
