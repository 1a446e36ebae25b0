"""Seq2seq throughput: kerasllm Seq2SeqLM vs a translator built from keras-hub's layers
(bench/keras_hub_seq2seq.py) at the same config.

    python -m bench.seq2seq_throughput                    # seq2seq_tiny and seq2seq_small
    python -m bench.seq2seq_throughput --quick            # one step of each part, tiny sizes
    python -m bench.seq2seq_throughput --parts=decode --configs=seq2seq_small --repeats=5

Three parts, side by side in this one process (alternating runs after an untimed
warm-up, median of --repeats, ratio = kerasllm / keras-hub):

  train   training tokens/s (real source and target tokens, padding not counted):
          both models trained by kerasllm's step function
          (kerasllm.training.loop.make_train_function, as trainers/train_seq2seq.py
          runs it), same AdamW, float32, on the same stream of batches: the default
          KJV -> Reina-Valera training pairs, tokenized by one SentencePiece model
          and batched by kerasllm.data.parallel_text.parallel_dataset_fn (length
          buckets, so the batches' widths vary as in the trainer; same seed for
          both, so round k of each trains on the same batches). XLA off by default
          (--jit_compile), as the trainer's default.
  decode  beam-4 translation sentences/s in-process, in a tf.function (XLA per
          --decode_jit): kerasllm.generation.beam_search over Seq2SeqLM's cached
          step vs keras_hub.samplers.BeamSampler over keras-hub's cached
          TransformerDecoder (BartSeq2SeqLM's pattern), the same held-out source
          sentences, random weights, length penalty 0 (BeamSampler has none). The
          </s> row of both tied tables is zeroed, so no hypothesis ends early and
          both produce exactly --new_tokens tokens per sentence (checked).
  export  kerasllm's exported `translate` signature (beam 4, length penalty 0.6, at
          most 2 x source tokens + 10 target tokens; kerasllm.export.
          seq2seq_signatures) loaded in a fresh process into a TF1 session with XLA
          compilation disabled, as TF Serving runs it; same sentences, random
          weights with </s> zeroed as above. keras-hub exports no translation
          signature, so this has no ratio.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench.keras_hub_seq2seq import (build_models, learn_tokenizer, load_pairs,  # noqa: E402
                                     source_batch)
from bench import timing  # noqa: E402
from bench.cases import random_seq2seq_model, seq2seq_decode_runner, timed  # noqa: E402
from bench.timing import OURS, THEIRS, make_runner, num_trainable  # noqa: E402
from kerasllm.data.parallel_text import parallel_dataset_fn  # noqa: E402
from kerasllm.export import seq2seq_signatures  # noqa: E402
from kerasllm.export.saved_model import export_saved_model  # noqa: E402
from kerasllm.models import registry  # noqa: E402
from kerasllm.serving.batching import DECODING  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("models", ["seq2seq_tiny", "seq2seq_small"], "Seq2seq configs to time.")
flags.DEFINE_alias("configs", "models")
flags.DEFINE_list("parts", ["train", "decode", "export"], "Which parts to run.")
flags.DEFINE_integer("rounds", 3, "Timed rounds per implementation (alternating).")
flags.DEFINE_alias("repeats", "rounds")
flags.DEFINE_integer("steps_per_round", 5, "Training steps per timed round.")
flags.DEFINE_alias("steps", "steps_per_round")
flags.DEFINE_integer("batch_size", 64, "Training sentence pairs per step.")
flags.DEFINE_integer("max_length", 128,
                     "Most source tokens (</s> included) and target tokens (<s>, </s> "
                     "included), in training and in the export.")
flags.DEFINE_enum("jit_compile", "off", ["off", "on"], "XLA for the training step.")
flags.DEFINE_integer("decode_batch_size", 8, "Sentences per decode call (and per export request).")
flags.DEFINE_integer("new_tokens", 48, "Target tokens each in-process beam search produces.")
flags.DEFINE_integer("beam_size", 4, "Beams, in-process and in the export.")
flags.DEFINE_enum("decode_jit", "on", ["off", "on"], "XLA for the in-process decoding.")
flags.DEFINE_bool("keras_hub_source_in_cache", True,
                  "keras-hub decoding: the source-side tensors ride in the sampler's cache "
                  "as in BartSeq2SeqLM (True), or are repeated per beam once and read from "
                  "the step's closure (False; see KerasHubSeq2SeqLM.decode).")
flags.DEFINE_integer("vocab_size", None,
                     "SentencePiece pieces. Default: the configs' (8000).")
flags.DEFINE_integer("train_pairs", None, "Use only the first N training pairs (default all).")
flags.DEFINE_bool("quick", False,
                  "Smoke run: seq2seq_tiny, one round of one step, batch 8, lengths 32, "
                  "2 sentences x 4 new tokens, XLA off, a 400-piece vocabulary learned "
                  "from 2000 pairs (flags given explicitly win).")
flags.DEFINE_string("time_export", None,
                    "Internal: time the `translate` signature of this SavedModel in this "
                    "process (XLA disabled, TF1 session) and print the result as JSON.")
flags.DEFINE_string("export_texts", None, "Internal: JSON list of texts for --time_export.")

QUICK = {"models": ["seq2seq_tiny"], "rounds": 1, "steps_per_round": 1, "batch_size": 8,
         "max_length": 32, "decode_batch_size": 2, "new_tokens": 4, "decode_jit": "off",
         "vocab_size": 400, "train_pairs": 2000}
NO_EXPORT = "n/a: no keras-hub translation export"


# --- training ------------------------------------------------------------------------

def train_row(name, tokenizer, train):
    config, builders = build_models(name, tokenizer.vocab_size)
    dataset_fn = parallel_dataset_fn(
        *train, tokenizer, global_batch_size=FLAGS.batch_size,
        max_source_length=FLAGS.max_length, max_target_length=FLAGS.max_length,
        bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, seed=0)
    tasks, runners = {}, {}
    for label, build in builders.items():
        tasks[label], runners[label] = make_runner(build, dataset_fn,
                                                   FLAGS.jit_compile == "on")
    print(f"{name} trainable parameters: " + ", ".join(
        f"{label} {num_trainable(task):,}" for label, task in tasks.items()), flush=True)
    medians = timing.alternate(runners, FLAGS.rounds)
    row = (name, medians[OURS], medians[THEIRS], medians[OURS] / medians[THEIRS])
    print(f"train {name}: {OURS} {row[1]:.0f} tok/s, {THEIRS} {row[2]:.0f} tok/s, "
          f"ratio {row[3]:.2f}", flush=True)
    return row


# --- in-process beam search --------------------------------------------------------------

def decode_runners(name, tokenizer, texts):
    """{label: callable -> sentences/s}, beam search over the same sources."""
    _, builders = build_models(name, tokenizer.vocab_size)
    source_ids, source_mask = source_batch(tokenizer, texts, FLAGS.max_length)
    return {side: seq2seq_decode_runner(
        builders[side], side, source_ids, source_mask, bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, new_tokens=FLAGS.new_tokens,
        beam_size=FLAGS.beam_size, jit_compile=FLAGS.decode_jit == "on",
        source_in_cache=FLAGS.keras_hub_source_in_cache) for side in (OURS, THEIRS)}


def decode_row(name, tokenizer, texts):
    medians = timing.alternate(decode_runners(name, tokenizer, texts), FLAGS.rounds)
    row = (name, medians[OURS], medians[THEIRS], medians[OURS] / medians[THEIRS])
    print(f"decode {name}: {OURS} {row[1]:.2f} sentences/s, {THEIRS} {row[2]:.2f} "
          f"sentences/s, ratio {row[3]:.2f}", flush=True)
    return row


# --- exported translate ------------------------------------------------------------------

def export_row(name, tokenizer, texts, export_dir):
    """(name, median sentences/s, target tokens per sentence) of kerasllm's exported
    `translate`, timed in a fresh process."""
    _, builders = build_models(name, tokenizer.vocab_size)
    model = random_seq2seq_model(builders[OURS], tokenizer.eos_id)
    signatures = seq2seq_signatures.seq2seq_signatures(
        model, tokenizer, max_source_length=FLAGS.max_length,
        max_target_length=FLAGS.max_length, max_beam_size=FLAGS.beam_size,
        beam_size=FLAGS.beam_size)
    # Only what is timed (the trainer also exports translate_with_options and score).
    signatures = {key: signatures[key] for key in ("serving_default", "translate")}
    path = export_saved_model(os.path.join(export_dir, name), signatures, [model, tokenizer],
                              check=False, batching=DECODING)
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--time_export={path}",
         f"--export_texts={json.dumps(texts)}", f"--rounds={FLAGS.rounds}"],
        capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"timing the export failed:\n{result.stderr[-3000:]}")
    timings = json.loads(result.stdout.strip().splitlines()[-1])
    source_tokens = [int(n) for n in tokenizer.tokenize(tf.constant(texts)).row_lengths()]
    expected = [min(2 * min(s, FLAGS.max_length - 1) + 10, FLAGS.max_length)
                for s in source_tokens]
    row = (name, statistics.median(timings["sentences_per_second"]),
           float(np.mean(expected)))
    print(f"export {name}: {OURS} {row[1]:.2f} sentences/s (up to {row[2]:.0f} target "
          f"tokens each); {THEIRS} {NO_EXPORT}", flush=True)
    return row


def time_export(path, texts, repeats):
    """Runs in a fresh process: loads `path` as TF Serving does (TF1 session, XLA
    compilation disabled) and times its `translate` signature on `texts`."""
    from kerasllm.export.check import disable_xla_compilation  # registers tensorflow-text ops
    disable_xla_compilation()
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        signature = tf.compat.v1.saved_model.loader.load(
            session, ["serve"], path).signature_def["translate"]
        fetches = {key: info.name for key, info in signature.outputs.items()}
        feed = {signature.inputs["text"].name: np.array(texts, dtype=object)}
        session.run(fetches, feed)  # the first run sets things up
        speeds = []
        for _ in range(repeats):
            _, seconds = timed(lambda: session.run(fetches, feed))
            speeds.append(len(texts) / seconds)
    print(json.dumps({"sentences_per_second": speeds}))


# --- report --------------------------------------------------------------------------------

def report(train, decode, export):
    head = f"{OURS:>12}{THEIRS:>12}{'ratio':>8}"
    if train:
        print(f"\ntraining: batch {FLAGS.batch_size} pairs, lengths <= {FLAGS.max_length}, "
              f"bucketed Bible pairs, AdamW, XLA {FLAGS.jit_compile}, kerasllm's step "
              f"function for both, {FLAGS.rounds} rounds x {FLAGS.steps_per_round} steps, "
              f"median real tokens/s (source + target)")
        print(f"{'model':<15}{head}")
        for name, ours, theirs, r in train:
            print(f"{name:<15}{ours:>12.0f}{theirs:>12.0f}{r:>8.2f}")
    if decode:
        print(f"\nbeam-{FLAGS.beam_size} translation in-process, XLA {FLAGS.decode_jit}: "
              f"{FLAGS.decode_batch_size} sentences x {FLAGS.new_tokens} target tokens, "
              f"{FLAGS.rounds} runs, median sentences/s; keras-hub's source tensors "
              f"{'in the sampler cache' if FLAGS.keras_hub_source_in_cache else 'in the closure'}")
        print(f"{'model':<15}{head}")
        for name, ours, theirs, r in decode:
            print(f"{name:<15}{ours:>12.2f}{theirs:>12.2f}{r:>8.2f}")
    if export:
        print(f"\nexported `translate`, TF1 session, XLA off: {FLAGS.decode_batch_size} "
              f"sentences per request, beam {FLAGS.beam_size}, {FLAGS.rounds} runs, median "
              f"sentences/s")
        print(f"{'model':<15}{OURS:>12}{'limit/sent':>13}")
        for name, ours, tokens in export:
            print(f"{name:<15}{ours:>12.2f}{tokens:>13.0f}  {THEIRS} {NO_EXPORT}")


def main(argv):
    del argv
    if FLAGS.time_export:
        time_export(FLAGS.time_export, json.loads(FLAGS.export_texts), FLAGS.rounds)
        return
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    unknown = set(FLAGS.parts) - {"train", "decode", "export"}
    if unknown:
        raise app.UsageError(f"unknown --parts {sorted(unknown)}")
    started = time.perf_counter()
    tf.random.set_seed(0)  # before the tokenizer: see kerasllm.training.seeding
    pairs = load_pairs(FLAGS.train_pairs)
    tokenizer = learn_tokenizer(pairs["train"],
                                FLAGS.vocab_size or registry.get(FLAGS.models[0]).vocab_size)
    texts = pairs["test"][0][:FLAGS.decode_batch_size]
    train, decode, export = [], [], []
    if "train" in FLAGS.parts:
        train = [train_row(name, tokenizer, pairs["train"]) for name in FLAGS.models]
    if "decode" in FLAGS.parts:
        decode = [decode_row(name, tokenizer, texts) for name in FLAGS.models]
    if "export" in FLAGS.parts:
        with tempfile.TemporaryDirectory() as export_dir:
            export = [export_row(name, tokenizer, texts, export_dir) for name in FLAGS.models]
    report(train, decode, export)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    app.run(main)
