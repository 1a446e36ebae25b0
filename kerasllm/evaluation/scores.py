"""Scores of predicted labels and answers against gold ones (NumPy, Python): accuracy and
macro-F1 of class ids, SQuAD exact match and token F1 of answer texts."""
import collections
import re
import string

import numpy as np


def classification_scores(labels, predictions, num_classes):
    """{"accuracy", "macro_f1"} of int class ids; macro-F1 averages the F1 of
    every class that occurs in `labels` or `predictions`."""
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    true_positives = np.diag(confusion)
    # 2·tp / (2·tp + fp + fn), where 2·tp + fp + fn = row sum + column sum.
    support = confusion.sum(axis=0) + confusion.sum(axis=1)
    present = support > 0
    f1 = 2 * true_positives[present] / support[present]
    return {"accuracy": float(true_positives.sum() / max(len(labels), 1)),
            "macro_f1": float(f1.mean()) if present.any() else 0.0}


_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text):
    """SQuAD's answer normalisation: lower case, no ASCII punctuation, no articles
    (a, an, the), single spaces."""
    text = "".join(c for c in text.lower() if c not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_f1(prediction, answer):
    """Token F1 of two normalised answers; two empty answers agree (F1 1)."""
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((collections.Counter(predicted) & collections.Counter(gold)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def answer_scores(predictions, answers):
    """{"exact_match", "f1"}: SQuAD v1.1 scores (one gold answer each), as fractions
    in [0, 1] averaged over the examples."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} answers")
    exact = [normalize_answer(p) == normalize_answer(a) for p, a in zip(predictions, answers)]
    f1 = [answer_f1(p, a) for p, a in zip(predictions, answers)]
    return {"exact_match": float(np.mean(exact)) if exact else 0.0,
            "f1": float(np.mean(f1)) if f1 else 0.0}
