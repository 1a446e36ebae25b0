"""Rotten Tomatoes sentences: counts, the fixed split, and malformed-line errors."""
import collections

import pytest

from kerasllm.data.rt_sentences import RtSentencesError, load_rt_sentences, parse_ground_truth


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
    confidences = sorted(e.confidence for e in train)
    assert 0.5 < confidences[0] < 0.6 and confidences[-1] > 0.97
    assert 0.85 < confidences[len(train) // 2] < 0.87  # half the ratings beyond ~1.8


def test_split_is_fixed_and_disjoint(split):
    again = load_rt_sentences()
    assert again == split
    train_texts = {e.text for e in split[0]}
    assert not train_texts & {e.text for e in split[1]}
    assert split[0][0].text.startswith("The Rock is destined")


def test_parse_drops_neutral_labels_by_sign_and_rates_confidence_by_size():
    text = "1\t2.5\tgood\r\n2\t-0.1\tbad\r\n3\t0\tmeh\r\n4\t-1\tdull\r\n"
    parsed = parse_ground_truth(text)
    assert [(sid, e.text, e.label) for sid, e in parsed] == [
        ("1", "good", 1), ("2", "bad", 0), ("4", "dull", 0)]
    assert [round(e.confidence, 3) for _, e in parsed] == [0.924, 0.525, 0.731]


@pytest.mark.parametrize("line, message", [
    ("2\t1.0", "got 2 field"),
    ("2\tgreat\tgood", "is not a number"),
    ("2\t1.0\t  ", "empty text"),
    ("1\t1.0\tagain", "duplicate id"),
])
def test_malformed_lines_are_named_with_their_number(line, message):
    with pytest.raises(RtSentencesError, match=f"snippets.txt:2: .*{message}"):
        parse_ground_truth(f"1\t1.0\tfine\n{line}\n", source="snippets.txt")
