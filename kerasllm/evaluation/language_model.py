"""Held-out loss and perplexity of a language model (GPT's next tokens, seq2seq's
target tokens under teacher forcing)."""
import math

import tensorflow as tf


class HeldOutLoss:
    """task -> {"loss", "perplexity"}: the task's loss averaged over every predicted
    token of `dataset`, and exp of it.

    `dataset` yields batches for `task.compute_loss_and_metrics`, whose loss is a
    mean over a batch's predictions; a prediction is a token after a real token of
    the sequence `mask` names (int [B, S], 1 = real: "padding_mask" for a GPT,
    "target_padding_mask" for seq2seq), so batches are weighted by how many they
    hold.
    """

    def __init__(self, dataset, mask):
        self.dataset, self.mask = dataset, mask
        self._model, self._loss = None, None

    def __call__(self, model):
        if model is not self._model:  # traced once per task
            self._model, self._loss = model, tf.function(
                lambda batch: model.compute_loss_and_metrics(batch)[0])
        total = count = 0.0
        for batch in self.dataset:
            real = tf.cast(batch[self.mask], tf.float32)
            predictions = float(tf.reduce_sum(real[:, 1:] * real[:, :-1]))
            total += float(self._loss(batch)) * predictions
            count += predictions
        loss = total / count
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
