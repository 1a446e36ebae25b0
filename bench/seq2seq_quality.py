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
tokens): kerasllm through its `translate_with_options` signature at beam size 1
(what the trainer's validation does), keras-hub through keras_hub.samplers.
GreedySampler over its cached decoder. The copy-the-source baseline (the English
sentence as its own "translation") is scored on the same pairs.
"""
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras_hub  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench.keras_hub_seq2seq import (build_models, learn_tokenizer, load_pairs,  # noqa: E402
                                     source_batch, strip)
from bench.timing import OURS, THEIRS, num_trainable, set_unless_given  # noqa: E402
from kerasllm.data.parallel_text import parallel_dataset_fn  # noqa: E402
from kerasllm.evaluation.translation import corpus_quality, translate_all  # noqa: E402
from kerasllm.export.seq2seq_signatures import seq2seq_signatures  # noqa: E402
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


def translator(label, model, tokenizer):
    """A function list of str -> list of str: greedy translations."""
    n = FLAGS.max_length
    if label == OURS:
        translate = seq2seq_signatures(model, tokenizer, max_source_length=n,
                                       max_target_length=n, max_beam_size=1,
                                       beam_size=1)["translate_with_options"]
        return lambda texts: translate_all(translate, texts, beam_size=1, max_length=n)

    sampler = keras_hub.samplers.GreedySampler()

    @tf.function(autograph=False)
    def decode(source_ids, source_mask):
        # n + 1: <s> and n target tokens, as kerasllm may generate n (</s> included).
        return model.decode(source_ids, source_mask, max_length=n + 1, sampler=sampler,
                            bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id,
                            pad_id=tokenizer.pad_id)

    def translate_texts(texts):
        out = []
        for start in range(0, len(texts), 64):  # translate_all's batches
            source_ids, source_mask = source_batch(tokenizer, texts[start:start + 64], n)
            rows = strip(decode(source_ids, source_mask), tokenizer.eos_id)
            ragged = tf.RaggedTensor.from_row_lengths(
                tf.constant([t for row in rows for t in row], tf.int32),
                tf.constant([len(row) for row in rows], tf.int64))
            out += [t.decode("utf-8") for t in tokenizer.detokenize(ragged).numpy()]
        return out

    return translate_texts


def run_side(label, builder, pairs, tokenizer, sentences):
    """[{"step", "loss", "bleu", "chrf", "seconds"}] at every evaluation of one model."""
    config = TrainConfig(model_dir=tempfile.mkdtemp(prefix=f"seq2seq_quality_{label}_"),
                         train_steps=FLAGS.train_steps, global_batch_size=FLAGS.batch_size,
                         learning_rate=FLAGS.learning_rate, log_every=FLAGS.eval_every,
                         checkpoint_every=FLAGS.train_steps, seed=FLAGS.seed)
    dataset_fn = parallel_dataset_fn(
        *pairs["train"], tokenizer, global_batch_size=FLAGS.batch_size,
        max_source_length=FLAGS.max_length, max_target_length=FLAGS.max_length,
        bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, seed=FLAGS.seed)
    models, history, translators = [], [], {}
    started = time.perf_counter()
    evaluation_seconds = [0.0]

    def build_task():
        models.append(builder())
        return models[-1]

    def on_log(step, metrics):
        if step % FLAGS.eval_every and step != FLAGS.train_steps:
            return
        model = models[-1]
        if id(model) not in translators:
            translators[id(model)] = translator(label, model, tokenizer)
        eval_start = time.perf_counter()
        quality = corpus_quality(translators[id(model)](sentences[0]), sentences[1])
        evaluation_seconds[0] += time.perf_counter() - eval_start
        history.append({"step": step, "train_loss": metrics.get("loss"),
                        "train_accuracy": metrics.get("accuracy"),
                        "bleu": quality.bleu, "chrf": quality.chrf,
                        "training_seconds": time.perf_counter() - started
                        - evaluation_seconds[0],
                        "example": quality.hypotheses[0]})
        print(f"{label} step {step}: train loss {metrics.get('loss', float('nan')):.3f}  "
              f"BLEU {quality.bleu:.2f}  chrF {quality.chrf:.2f}  "
              f"({history[-1]['training_seconds']:.0f} s training)", flush=True)

    try:
        result = train(build_task, dataset_fn, config, create_strategy("one_device"),
                       on_log=on_log)
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
             f"chrF {copied.chrf:.2f}", "",
             "| step | " + " | ".join(f"{side} train loss | {side} BLEU | {side} chrF"
                                     for side in histories) + " |",
             "|---:|" + "---:|---:|---:|" * len(histories)]
    steps = sorted({record["step"] for history in histories.values() for record in history})
    for step in steps:
        cells = []
        for history in histories.values():
            record = next((r for r in history if r["step"] == step), None)
            cells += (["", "", ""] if record is None else
                      [f"{record['train_loss']:.3f}", f"{record['bleu']:.2f}",
                       f"{record['chrf']:.2f}"])
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    lines += ["", "| model | wall s, set-up and training (not evaluation) |", "|---|---:|"]
    for side, history in histories.items():
        if history:
            lines.append(f"| {side} | {history[-1]['training_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv):
    del argv
    if FLAGS.quick:
        set_unless_given(QUICK)
    logging.set_verbosity(logging.WARNING)
    started = time.perf_counter()
    set_global_seed(FLAGS.seed)  # before the tokenizer: see kerasllm.training.seeding
    pairs = load_pairs(FLAGS.train_pairs)
    tokenizer = learn_tokenizer(pairs["train"],
                                FLAGS.vocab_size or registry.get(FLAGS.model).vocab_size)
    sentences = held_out(pairs, FLAGS.eval_sentences)
    copied = corpus_quality(*sentences)
    print(f"copy-the-source baseline on {len(sentences[0])} held-out pairs: "
          f"BLEU {copied.bleu:.2f}  chrF {copied.chrf:.2f}", flush=True)
    _, builders = build_models(FLAGS.model, tokenizer.vocab_size)
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
