"""Held-out loss and perplexity of a language model (GPT's next tokens, seq2seq's
target tokens under teacher forcing), and bits per character, which compares models
whose tokenizers differ."""
import math

import tensorflow as tf

from kerasllm.data.lm_examples import lm_dataset


class HeldOutLoss:
    """task -> {"loss", "perplexity"[, "bits_per_character"]}: the task's loss
    averaged over every predicted token of `dataset`, exp of it, and, given the
    held-out text's `characters_per_token`, the loss in bits per character of text
    (loss / ln 2 / characters_per_token).

    `dataset` yields batches for `task.compute_loss_and_metrics`, whose loss is a
    mean over a batch's predictions; a prediction is a token after a real token of
    the sequence `mask` names (int [B, S], 1 = real: "padding_mask" for a GPT,
    "target_padding_mask" for seq2seq) and, where the batch has a target_mask, a
    target token, so batches are weighted by how many they hold.
    """

    def __init__(self, dataset, mask, characters_per_token=None):
        self.dataset, self.mask = dataset, mask
        self.characters_per_token = characters_per_token
        self._model, self._loss = None, None

    def __call__(self, model):
        if model is not self._model:  # traced once per task
            # Batches padded to their longest example come in several lengths.
            self._model, self._loss = model, tf.function(
                lambda batch: model.compute_loss_and_metrics(batch)[0],
                reduce_retracing=True)
        total = count = 0.0
        for batch in self.dataset:
            real = tf.cast(batch[self.mask], tf.float32)
            predicted = real[:, 1:] * real[:, :-1]
            if "target_mask" in batch:  # fine-tuning data: the responses' tokens alone
                predicted *= tf.cast(batch["target_mask"][:, 1:], tf.float32)
            predictions = float(tf.reduce_sum(predicted))
            total += float(self._loss(batch)) * predictions
            count += predictions
        loss = total / count
        scores = {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
        if self.characters_per_token:
            scores["bits_per_character"] = loss / math.log(2) / self.characters_per_token
        return scores


def documents_loss(stream, documents, *, seq_length, batch_size):
    """HeldOutLoss of a GPT over `stream` (kerasllm.data.lm_examples.token_stream of
    `documents`) in `seq_length`-token windows, with bits per character of the
    documents' text (their lines joined by newlines, as the stream holds them)."""
    characters = sum(len("\n".join(document)) for document in documents)
    return HeldOutLoss(lm_dataset(stream, seq_length=seq_length, batch_size=batch_size,
                                  training=False), "padding_mask",
                       characters_per_token=characters / len(stream))
