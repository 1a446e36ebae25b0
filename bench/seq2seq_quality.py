"""Translation quality at an equal training budget: kerasllm Seq2SeqLM vs the translator
built from keras-hub's layers (bench/keras_hub_seq2seq.py), same config.

    python -m bench.seq2seq_quality                       # seq2seq_small, see the flags
    python -m bench.seq2seq_quality --train_steps=800 --eval_every=200 \
        --output=/tmp/seq2seq_quality.md
    python -m bench.seq2seq_quality --quick               # smoke run: a few steps, tiny

Both models are trained by kerasllm's training loop (kerasllm.training.loop.train, as
trainers/train_seq2seq.py runs it) with the same budget: the same number of steps,
batch, AdamW and learning-rate schedule (the trainer's defaults: peak 1e-3, 10% linear
warmup, linear decay), seed, data stream (the default KJV -> Reina-Valera 1909
training pairs, bucketed by kerasllm.data.parallel_text.parallel_dataset_fn) and one
SentencePiece vocabulary learned once from both sides of the training pairs and
shared by both. Every --eval_every steps each is scored on the same --eval_sentences
held-out pairs (spread evenly over the validation books, Joshua and Mark) by
sacrebleu corpus BLEU and chrF of greedy translations (at most --max_length target
tokens), at train()'s on_evaluate hook: kerasllm through its export's
`translate_with_options` at one beam (kerasllm.evaluation.translation.
greedy_translator, what the trainer's validation runs), keras-hub through
keras_hub.samplers.GreedySampler over its cached decoder (bench/cases.
seq2seq_translator). The copy-the-source baseline (the English sentence as its own
"translation") is scored on the same pairs. The times are the training loop's time
in training steps (kerasllm.training.progress: the first step's tracing in, set-up
and evaluation out).
"""
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench import cases  # noqa: E402
from bench.cases import OURS, THEIRS  # noqa: E402
from bench.tables import markdown_table  # noqa: E402
from bench.timing import num_trainable, set_unless_given  # noqa: E402
from kerasllm.data.parallel_text import parallel_dataset_fn  # noqa: E402
from kerasllm.evaluation.translation import corpus_quality, translate_all  # noqa: E402
from kerasllm.models import registry  # noqa: E402
from kerasllm.training.config import TrainConfig  # noqa: E402
from kerasllm.training.loop import train  # noqa: E402
from kerasllm.training.seeding import set_global_seed  # noqa: E402
from kerasllm.training.strategy import create_strategy  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "seq2seq_small", "The seq2seq config both models take.")
flags.DEFINE_integer("train_steps", 800, "Optimizer steps, each model.")
flags.DEFINE_integer("batch_size", 64, "Sentence pairs per step.")
flags.DEFINE_float("learning_rate", 1e-3, "Peak learning rate (trainer's default).")
flags.DEFINE_integer("eval_every", 200, "Score both models every this many steps.")
flags.DEFINE_integer("eval_sentences", 200, "Held-out pairs scored (evenly spread).")
flags.DEFINE_integer("max_length", 128,
                     "Most source and target tokens in training, and target tokens "
                     "generated.")
flags.DEFINE_integer("vocab_size", None, "SentencePiece pieces. Default: the config's.")
flags.DEFINE_integer("train_pairs", None, "Use only the first N training pairs (default all).")
flags.DEFINE_integer("seed", 0, "Seed of both runs (weights, dropout, data order).")
flags.DEFINE_list("sides", [OURS, THEIRS], "Which models to train.")
flags.DEFINE_string("output", None, "Also write the tables (markdown) and the history "
                    "(JSON, same name + .json) here.")
flags.DEFINE_bool("quick", False,
                  "Smoke run: seq2seq_tiny, 2 steps, one evaluation (step 2) on 8 "
                  "sentences, batch 8, lengths 32, a 400-piece vocabulary from 2000 pairs.")

QUICK = {"model": "seq2seq_tiny", "train_steps": 2, "eval_every": 2, "eval_sentences": 8,
         "batch_size": 8, "max_length": 32, "vocab_size": 400, "train_pairs": 2000}


def held_out(pairs, count):
    """`count` validation pairs spread evenly over the validation books."""
    sources, targets = pairs["validation"]
    stride = max(1, len(sources) // count)
    return sources[::stride][:count], targets[::stride][:count]


def run_side(label, builder, pairs, tokenizer, sentences):
    """[{"step", "train_loss", "train_accuracy", "bleu", "chrf", "training_seconds",
    "example"}] at every evaluation of one model: train()'s on_evaluate hook, which
    gets the task, scores its greedy translations (cases.seq2seq_translator)."""
    config = TrainConfig(model_dir=tempfile.mkdtemp(prefix=f"seq2seq_quality_{label}_"),
                         train_steps=FLAGS.train_steps, global_batch_size=FLAGS.batch_size,
                         learning_rate=FLAGS.learning_rate, log_every=FLAGS.eval_every,
                         eval_every=FLAGS.eval_every, checkpoint_every=FLAGS.train_steps,
                         seed=FLAGS.seed)
    dataset_fn = parallel_dataset_fn(
        *pairs["train"], tokenizer, global_batch_size=FLAGS.batch_size,
        max_source_length=FLAGS.max_length, max_target_length=FLAGS.max_length,
        bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, seed=FLAGS.seed)
    history, translators = [], {}

    def on_evaluate(point):
        if id(point.task) not in translators:  # traced once per task
            translators[id(point.task)] = cases.seq2seq_translator(
                label, point.task, tokenizer, FLAGS.max_length)
        quality = corpus_quality(translate_all(translators[id(point.task)], sentences[0],
                                               beam_size=1, length_penalty=0.0,
                                               max_length=FLAGS.max_length), sentences[1])
        history.append({"step": point.step, "train_loss": point.metrics.get("loss"),
                        "train_accuracy": point.metrics.get("accuracy"),
                        "bleu": quality.bleu, "chrf": quality.chrf,
                        "training_seconds": point.train_seconds,
                        "example": quality.hypotheses[0]})
        print(f"{label} step {point.step}: train loss "
              f"{point.metrics.get('loss', float('nan')):.3f}  BLEU {quality.bleu:.2f}  "
              f"chrF {quality.chrf:.2f}  ({point.train_seconds:.0f} s training)", flush=True)

    try:
        result = train(builder, dataset_fn, config, create_strategy("one_device"),
                       on_evaluate=on_evaluate)
    finally:
        shutil.rmtree(config.model_dir, ignore_errors=True)  # its checkpoints
    print(f"{label}: {num_trainable(result.task):,} trainable parameters, "
          f"{result.tokens_per_second:.0f} tok/s in the last window", flush=True)
    return history


def tables(histories, copied, sentences):
    n = FLAGS.train_steps
    lines = [f"{FLAGS.model}, {n} steps x batch {FLAGS.batch_size}, lr {FLAGS.learning_rate}, "
             f"seed {FLAGS.seed}; greedy decoding; {len(sentences[0])} held-out pairs "
             f"(validation, evenly spread); copy-the-source baseline BLEU {copied.bleu:.2f}, "
             f"chrF {copied.chrf:.2f}", ""]
    steps = sorted({record["step"] for history in histories.values() for record in history})
    rows = []
    for step in steps:
        rows.append([step])
        for history in histories.values():
            record = next((r for r in history if r["step"] == step), None)
            rows[-1] += (["", "", ""] if record is None else
                         [f"{record['train_loss']:.3f}", f"{record['bleu']:.2f}",
                          f"{record['chrf']:.2f}"])
    lines += markdown_table(["step"] + [f"{side} {score}" for side in histories
                                        for score in ("train loss", "BLEU", "chrF")], rows)
    lines += [""] + markdown_table(
        ["<model", "s in training steps (not set-up or evaluation)"],
        [[side, f"{history[-1]['training_seconds']:.0f}"]
         for side, history in histories.items() if history])
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.quick:
        set_unless_given(QUICK)
    logging.set_verbosity(logging.WARNING)
    started = time.perf_counter()
    set_global_seed(FLAGS.seed)  # before the tokenizer: see kerasllm.training.seeding
    pairs = cases.bible_pairs(FLAGS.train_pairs)
    tokenizer = cases.shared_vocabulary(pairs["train"],
                                        FLAGS.vocab_size or registry.get(FLAGS.model).vocab_size)
    sentences = held_out(pairs, FLAGS.eval_sentences)
    copied = corpus_quality(*sentences)
    print(f"copy-the-source baseline on {len(sentences[0])} held-out pairs: "
          f"BLEU {copied.bleu:.2f}  chrF {copied.chrf:.2f}", flush=True)
    builders = cases.seq2seq_builders(
        registry.get(FLAGS.model).replace(vocab_size=tokenizer.vocab_size))
    histories = {side: run_side(side, builders[side], pairs, tokenizer, sentences)
                 for side in FLAGS.sides}
    text = tables(histories, copied, sentences)
    print("\n" + text + f"\n\n({time.perf_counter() - started:.0f} s in all)")
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(text + "\n")
        with open(FLAGS.output + ".json", "w") as f:
            json.dump({"flags": {name: FLAGS[name].value for name in
                                 ("model", "train_steps", "batch_size", "learning_rate",
                                  "eval_every", "eval_sentences", "max_length", "seed")},
                       "copy_source": {"bleu": copied.bleu, "chrf": copied.chrf},
                       "histories": histories}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    app.run(main)
