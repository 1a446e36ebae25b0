r"""A chat model's answers to a packaged task's held-out questions, scored:

    rt_sentences  "Is the sentiment ... positive or negative?": accuracy, each answer
                  read as the label name it mentions first ("Positive." and "The
                  sentiment is positive" both count; an answer naming none is wrong)
    bible_en_es   "Translate this Bible verse from English to Spanish.": corpus BLEU
                  and chrF (sacrebleu) against the Reina-Valera verse

    python -m kerasllm.evaluation.chat_tasks --model=saved_models/smollm2_rt/1 \
        --task=rt_sentences --split=test

--model is an export (its `chat` signature answers, as TF Serving would) or a GPT
preset such as `smollm2` (its `chat` method: the same functions, in this process). A
translator's export (a `translate` signature, e.g. train_seq2seq's) answers
bible_en_es too, translating each English verse itself: the dedicated model beside the
chat model on the same verses.
The validation split chooses settings; the test split is for the final figure.
Prints one JSON line: the scores, the examples' count and the first answers.
"""
import json
import os
import re

from absl import app, flags

from kerasllm.datasets import bible_parallel, rt_sentences
from kerasllm.evaluation.translation import corpus_quality

TASKS = ("rt_sentences", "bible_en_es")
SPLITS = ("validation", "test")


def answered_label(answer, label_names):
    """The index of the label name `answer` mentions first (whole words, any case),
    or -1 if it names none."""
    found = [(match.start(), index) for index, name in enumerate(label_names)
             for match in [re.search(rf"\b{re.escape(name)}\b", answer, re.IGNORECASE)]
             if match]
    return min(found)[1] if found else -1


def label_accuracy(answers, labels, label_names):
    """{"accuracy", "unanswered", "examples"} of answers (strings) against label ids."""
    read = [answered_label(answer, label_names) for answer in answers]
    return {"accuracy": sum(r == l for r, l in zip(read, labels)) / len(labels),
            "unanswered": sum(r < 0 for r in read) / len(labels), "examples": len(labels)}


def _is_export(path):
    """A SavedModel version directory, or an export root holding versions."""
    return os.path.isdir(path) and (
        os.path.exists(os.path.join(path, "saved_model.pb"))
        or any(name.isdigit() and os.path.exists(os.path.join(path, name, "saved_model.pb"))
               for name in os.listdir(path)))


def chat_answers(model, messages, batch_size, max_new_tokens, sources=None):
    """The answers of `model` (an export directory or a GPT preset) to `messages`;
    an export answers with up to its own max_new_tokens, a translator's export
    translates `sources` (each message's text to translate) instead."""
    if _is_export(model):
        from kerasllm.export import load
        loaded = load(model)
        if "translate" in loaded.signatures:
            if sources is None:
                raise app.UsageError(f"{model} is a translator: it answers translation tasks "
                                     "only")
            messages = sources
            answer = lambda batch: loaded.translate(text=batch)["translation"]  # noqa: E731
        else:
            answer = lambda batch: loaded.chat(message=batch)["text"]  # noqa: E731
    else:
        from kerasllm.models import GptCausalLM
        task = GptCausalLM.from_preset(model)
        answer = lambda batch: task.chat(batch, max_new_tokens=max_new_tokens)  # noqa: E731
    answers = []
    for start in range(0, len(messages), batch_size):
        answers += answer(messages[start:start + batch_size])
    return answers


def task_questions(task, split):
    """(messages, sources, score: answers -> {name: value}) of a task's held-out split
    (rt_sentences' validation: held out of its training split); `sources` are what a
    translator translates (None for other tasks)."""
    if task == "rt_sentences":
        train, test = rt_sentences.load_rt_sentences()
        examples = test if split == "test" else rt_sentences.validation_split(train)[1]
        return ([rt_sentences.QUESTION.format(sentence=e.text) for e in examples], None,
                lambda answers: label_accuracy(answers, [e.label for e in examples],
                                               rt_sentences.LABEL_NAMES))
    sources, targets = bible_parallel.kjv_to_reina_valera(split)

    def translation_scores(answers):
        quality = corpus_quality([a.strip() for a in answers], targets[:len(answers)])
        return {"bleu": quality.bleu, "chrf": quality.chrf, "examples": len(answers)}

    return ([bible_parallel.TRANSLATE.format(english=s) for s in sources], sources,
            translation_scores)


def main(_):
    messages, sources, score = task_questions(FLAGS.task, FLAGS.split)
    limit = FLAGS.limit or None
    answers = chat_answers(FLAGS.model, messages[:limit], FLAGS.batch_size,
                           FLAGS.max_new_tokens, sources and sources[:limit])
    print(json.dumps({"model": FLAGS.model, "task": FLAGS.task, "split": FLAGS.split,
                      **score(answers), "first_answers": answers[:5]}, ensure_ascii=False))


if __name__ == "__main__":
    FLAGS = flags.FLAGS
    flags.DEFINE_string("model", None, "An export directory (a chat model's or, for "
                        "bible_en_es, a translator's) or a GPT preset.", required=True)
    flags.DEFINE_enum("task", "rt_sentences", TASKS, "The questions and their scoring.")
    flags.DEFINE_enum("split", "validation", SPLITS, "Which held-out examples.")
    flags.DEFINE_integer("limit", 0, "Score the first N only (0: all).")
    flags.DEFINE_integer("batch_size", 32, "Messages per call.")
    flags.DEFINE_integer("max_new_tokens", 32,
                         "Answer length for a preset (an export answers with its own).")
    app.run(main)
