"""Rotten Tomatoes sentences: counts, the fixed split, rater confidence, malformed lines."""
import collections

import pytest

from kerasllm.data.labeled_text import LabeledExample
from kerasllm.datasets.rt_sentences import (RtSentencesError, load_rt_sentences, parse_ground_truth,
                                        parse_ratings, rater_confidence, with_rater_confidence)


@pytest.fixture(scope="module")
def split():
    return load_rt_sentences()


def test_counts_and_split_sizes(split):
    train, test = split
    assert (len(train), len(test)) == (8454, 2114)
    labels = collections.Counter(e.label for e in train + test)
    assert labels == {1: 5242, 0: 5326}
    # A random 20% keeps the classes roughly balanced on both sides.
    assert 0.45 < sum(e.label for e in test) / len(test) < 0.55


def test_confidence_comes_from_the_raters(split):
    train, _ = split
    confidences = sorted(e.confidence for e in train)
    assert confidences[0] == 0.5 and confidences[-1] == pytest.approx(0.85)
    assert 0.79 < sum(confidences) / len(confidences) < 0.81
    # "The Rock is destined ..." (id 1): 14 of its 15 raters positive, one neutral.
    assert train[0].confidence == pytest.approx(0.5 + 0.7 * (14.5 / 15 - 0.5))


def test_split_is_fixed_and_disjoint(split):
    again = load_rt_sentences()
    assert again == split
    train_texts = {e.text for e in split[0]}
    assert not train_texts & {e.text for e in split[1]}
    assert split[0][0].text.startswith("The Rock is destined")


def test_parse_drops_neutral_lines_and_labels_by_sign():
    text = "1\t2.5\tgood\r\n2\t-0.1\tbad\r\n3\t0\tmeh\r\n4\t-1\tdull\r\n"
    assert parse_ground_truth(text) == [
        ("1", LabeledExample("good", 1)), ("2", LabeledExample("bad", 0)),
        ("4", LabeledExample("dull", 0))]


@pytest.mark.parametrize("label, ratings, confidence", [
    (1, [3, 2, 4, 1], 0.85),             # unanimous
    (0, [-1, -2, 0, 1], 0.5 + 0.7 * (2.5 / 4 - 0.5)),  # neutral counts half
    (1, [2, -1, -1, -1], 0.5),           # mean and majority disagree: floored
    (0, [-2, -2, 2, 2], 0.5),
])
def test_rater_confidence(label, ratings, confidence):
    assert rater_confidence(label, ratings) == pytest.approx(confidence)


def test_ratings_set_each_sentences_confidence():
    sentences = parse_ground_truth("1\t2.5\tgood\n4\t-1\tdull\n")
    ratings = parse_ratings("4\t-1\t0.5\t[-1, -1, 0, -2]\r\n1\t2.5\t1\t[2, 3]\r\n")
    assert ratings == {"4": [-1, -1, 0, -2], "1": [2, 3]}
    assert [(sid, e.label, round(e.confidence, 4))
            for sid, e in with_rater_confidence(sentences, ratings)] == [
        ("1", 1, 0.85), ("4", 0, round(0.5 + 0.7 * (3.5 / 4 - 0.5), 4))]


def test_a_sentence_without_ratings_is_named():
    sentences = parse_ground_truth("1\t2.5\tgood\n7\t-1\tdull\n")
    with pytest.raises(RtSentencesError, match=r"ratings.txt: no ratings for 1 .*'7'"):
        with_rater_confidence(sentences, {"1": [2]}, source="ratings.txt")


@pytest.mark.parametrize("parse, first_line, line, message", [
    (parse_ground_truth, "1\t1.0\tfine", "2\t1.0", "got 2 field"),
    (parse_ground_truth, "1\t1.0\tfine", "2\tgreat\tgood", "is not a number"),
    (parse_ground_truth, "1\t1.0\tfine", "2\t1.0\t  ", "empty text"),
    (parse_ground_truth, "1\t1.0\tfine", "1\t1.0\tagain", "duplicate id"),
    (parse_ratings, "1\t1.0\t0.5\t[1, 1]", "2\t1.0\t0.5", "got 3 field"),
    (parse_ratings, "1\t1.0\t0.5\t[1, 1]", "2\t1.0\t0.5\t[1, 2", "not a non-empty list"),
    (parse_ratings, "1\t1.0\t0.5\t[1, 1]", "2\t1.0\t0.5\t[]", "not a non-empty list"),
    (parse_ratings, "1\t1.0\t0.5\t[1, 1]", "2\t1.0\t0.5\t[1, \"a\"]", "not a non-empty list"),
    (parse_ratings, "1\t1.0\t0.5\t[1, 1]", "1\t1.0\t0.5\t[1]", "duplicate id"),
])
def test_malformed_lines_are_named_with_their_number(parse, first_line, line, message):
    with pytest.raises(RtSentencesError, match=f"data.txt:2: .*{message}"):
        parse(f"{first_line}\n{line}\n", source="data.txt")
