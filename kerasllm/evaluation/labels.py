"""Accuracy and macro-F1 of a classifier's or a tagger's argmax labels on held-out
batches."""
import numpy as np
import tensorflow as tf

from kerasllm.evaluation.scores import classification_scores


class LabelEvaluator:
    """task -> {"accuracy", "macro_f1"} (see classification_scores).

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
