"""Eval scores: classification accuracy and macro-F1, SQuAD exact match and token F1."""
import numpy as np
import pytest

from kerasllm.evaluation.scores import (answer_f1, answer_scores, classification_scores,
                                       normalize_answer)


def test_classification_scores_average_the_classes_present():
    labels, predictions = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    scores = classification_scores(labels, predictions, num_classes=3)  # class 2 never occurs
    assert scores["accuracy"] == 0.75
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_classification_scores_of_nothing_are_zero():
    assert classification_scores(np.array([], int), np.array([], int), 2) == {
        "accuracy": 0.0, "macro_f1": 0.0}


def test_squad_normalisation_drops_case_punctuation_articles_and_spacing():
    assert normalize_answer("  The  Prince of Denmark!") == "prince of denmark"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theatre") == "theatre"  # "the" only as a word


def test_answer_scores():
    predictions = ["the Prince of Denmark", "prince", "Hamlet", ""]
    answers = ["Prince of Denmark.", "the prince of denmark", "Ophelia", ""]
    assert answer_f1(predictions[1], answers[1]) == pytest.approx(2 * 1 * (1 / 3) / (1 + 1 / 3))
    scores = answer_scores(predictions, answers)
    assert scores["exact_match"] == 0.5  # rows 0 and 3
    assert scores["f1"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
