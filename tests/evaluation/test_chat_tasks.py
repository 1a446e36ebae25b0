"""Generated answers read as labels: the first label name an answer mentions."""
from kerasllm.datasets.rt_sentences import LABEL_NAMES, QUESTION, as_conversations
from kerasllm.data.labeled_text import LabeledExample
from kerasllm.evaluation.chat_tasks import answered_label, label_accuracy


def test_an_answer_is_the_label_it_names_first():
    assert answered_label("Positive.", LABEL_NAMES) == 1
    assert answered_label("The sentiment is negative, not positive", LABEL_NAMES) == 0
    assert answered_label("It is mixed", LABEL_NAMES) == -1
    # Whole words only: "nonpositive" names no label.
    assert answered_label("nonpositive", LABEL_NAMES) == -1


def test_accuracy_counts_unanswered_as_wrong():
    scores = label_accuracy(["positive", "I cannot say", "negative", "negative"],
                            [1, 0, 1, 0], LABEL_NAMES)
    assert scores == {"accuracy": 0.5, "unanswered": 0.25, "examples": 4}


def test_labelled_sentences_become_one_question_and_its_answer():
    [conversation] = as_conversations([LabeledExample("a fine film", 1)])
    assert conversation.messages == [
        {"role": "user", "content": QUESTION.format(sentence="a fine film")},
        {"role": "assistant", "content": "positive"}]
    assert conversation.where == "rt_sentences:1"
