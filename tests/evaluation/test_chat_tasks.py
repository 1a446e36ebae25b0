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


def test_a_translators_export_translates_the_sources_of_a_translation_task(tmp_path):
    import pytest
    from absl import app

    from kerasllm.evaluation.chat_tasks import chat_answers, task_questions
    from kerasllm.models import Seq2SeqLM
    from kerasllm.tokenizers import train_sentencepiece

    messages, sources, score = task_questions("bible_en_es", "test")
    assert len(messages) == len(sources) and sources[0] in messages[0]
    pieces = train_sentencepiece(sources[:200], vocab_size=400)
    model = Seq2SeqLM.from_name("seq2seq_tiny", vocab_size=pieces.vocab_size,
                                num_encoder_layers=1, num_decoder_layers=1).build_for_inputs()
    model.tokenizer = pieces
    export = model.export(str(tmp_path / "translator"), check=False)
    answers = chat_answers(export, messages[:3], 2, 8, sources[:3])
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)
    assert set(score(answers)) == {"bleu", "chrf", "examples"}
    with pytest.raises(app.UsageError, match="translator"):
        chat_answers(export, messages[:3], 2, 8)
