r"""Accuracy of a generative model's answers as labels: each answer is read as the
label name it mentions first (so "Positive." and "The sentiment is positive" both
count), and an answer naming none is wrong.

    python -m kerasllm.evaluation.generated_labels --model=saved_models/smollm2_rt/1 \
        --dataset=rt_sentences --split=test

--model is an export (its `chat` signature answers, as TF Serving would) or a GPT
preset such as `smollm2` (its `chat` method, the same functions in this process).
Prints one JSON line: accuracy, unanswered share, examples, and the first answers.
"""
import json
import os
import re

from absl import app, flags

from kerasllm.datasets import rt_sentences

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


def chat_answers(model, messages, batch_size):
    """The answers of `model` (an export directory or a GPT preset) to `messages`."""
    if _is_export(model):
        from kerasllm.export import load
        loaded = load(model)
        answer = lambda batch: loaded.chat(message=batch)["text"]  # noqa: E731
    else:
        from kerasllm.models import GptCausalLM
        task = GptCausalLM.from_preset(model)
        answer = lambda batch: task.chat(batch, max_new_tokens=32)  # noqa: E731
    answers = []
    for start in range(0, len(messages), batch_size):
        answers += answer(messages[start:start + batch_size])
    return answers


def rt_sentences_split(split):
    """The labelled sentences of `split` (validation: held out of the training split)."""
    train, test = rt_sentences.load_rt_sentences()
    return test if split == "test" else rt_sentences.validation_split(train)[1]


def main(_):
    examples = rt_sentences_split(FLAGS.split)[:FLAGS.limit or None]
    messages = [rt_sentences.QUESTION.format(sentence=e.text) for e in examples]
    answers = chat_answers(FLAGS.model, messages, FLAGS.batch_size)
    scores = label_accuracy(answers, [e.label for e in examples], rt_sentences.LABEL_NAMES)
    print(json.dumps({"model": FLAGS.model, "split": FLAGS.split, **scores,
                      "first_answers": answers[:5]}))


if __name__ == "__main__":
    FLAGS = flags.FLAGS
    flags.DEFINE_string("model", None, "An export directory or a GPT preset.", required=True)
    flags.DEFINE_enum("dataset", "rt_sentences", ["rt_sentences"], "The labelled data.")
    flags.DEFINE_enum("split", "validation", SPLITS, "Which held-out sentences.")
    flags.DEFINE_integer("limit", 0, "Score the first N only (0: all).")
    flags.DEFINE_integer("batch_size", 32, "Messages per call.")
    app.run(main)
