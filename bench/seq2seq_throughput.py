"""Seq2seq throughput: kerasllm Seq2SeqLM vs a translator built from keras-hub's layers
(bench/keras_hub_seq2seq.py) at the same config.

    python -m bench.seq2seq_throughput                    # seq2seq_tiny and seq2seq_small
    python -m bench.seq2seq_throughput --quick            # one step of each part, tiny sizes
    python -m bench.seq2seq_throughput --parts=decode --configs=seq2seq_small --repeats=5

Three parts, side by side in this one process (alternating runs after an untimed
warm-up, median of --repeats, ratio = kerasllm / keras-hub):

  train   training tokens/s (real source and target tokens, padding not counted):
          both models trained by kerasllm's step function
          (kerasllm.training.step.make_train_function, as trainers/train_seq2seq.py
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
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench import cases, exported, timing  # noqa: E402
from bench.cases import OURS, THEIRS  # noqa: E402
from bench.keras_hub_seq2seq import source_batch  # noqa: E402
from bench.tables import markdown_table, ratio, speed  # noqa: E402
from kerasllm.data.parallel_text import parallel_dataset_fn  # noqa: E402
from kerasllm.export import seq2seq_signatures  # noqa: E402
from kerasllm.export.saved_model import export_saved_model  # noqa: E402
from kerasllm.models import registry  # noqa: E402
from kerasllm.serving.batching import DECODING  # noqa: E402

FLAGS = flags.FLAGS
timing.define_flags(models=["seq2seq_tiny", "seq2seq_small"], batch_size=64, seq_length=128,
                    jit_compile="off", rounds=3, steps_per_round=5)
flags.adopt_module_key_flags(timing)  # lists them in --help
# Here --seq_length caps each side (the trainer's --max_source/target_length): the
# pairs are bucketed by length, so batches vary in width as in the trainer; the
# export takes sources and targets of that many tokens too.
flags.DEFINE_alias("max_length", "seq_length")
timing.define_parts(["train", "decode", "export"])
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

QUICK = {"models": ["seq2seq_tiny"], "rounds": 1, "steps_per_round": 1, "batch_size": 8,
         "seq_length": 32, "decode_batch_size": 2, "new_tokens": 4, "decode_jit": "off",
         "vocab_size": 400, "train_pairs": 2000}
NO_EXPORT = "n/a: no keras-hub translation export"


# --- training ------------------------------------------------------------------------

def builders(name, tokenizer):
    """cases.seq2seq_builders at config `name` with the tokenizer's vocabulary."""
    return cases.seq2seq_builders(registry.get(name).replace(vocab_size=tokenizer.vocab_size))


def train_rows(name, tokenizer, train):
    """compare's rows: both models through kerasllm's step on the bucketed pairs."""
    dataset_fn = parallel_dataset_fn(
        *train, tokenizer, global_batch_size=FLAGS.batch_size,
        max_source_length=FLAGS.seq_length, max_target_length=FLAGS.seq_length,
        bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, seed=0)
    return timing.compare(name, timing.same_step(builders(name, tokenizer), dataset_fn))


# --- in-process beam search --------------------------------------------------------------

def decode_runners(name, tokenizer, texts):
    """{label: callable -> sentences/s}, beam search over the same sources."""
    build = builders(name, tokenizer)
    source_ids, source_mask = source_batch(tokenizer, texts, FLAGS.seq_length)
    return {side: cases.seq2seq_decode_runner(
        build[side], side, source_ids, source_mask, bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id, new_tokens=FLAGS.new_tokens,
        beam_size=FLAGS.beam_size, jit_compile=FLAGS.decode_jit == "on",
        source_in_cache=FLAGS.keras_hub_source_in_cache) for side in (OURS, THEIRS)}


def decode_row(name, tokenizer, texts):
    row = {"model": name,
           **timing.alternate(decode_runners(name, tokenizer, texts), FLAGS.rounds)}
    print(f"decode {name}: {OURS} {row[OURS]:.2f} sentences/s, {THEIRS} {row[THEIRS]:.2f} "
          f"sentences/s", flush=True)
    return row


# --- exported translate ------------------------------------------------------------------

def export_row(name, tokenizer, texts, export_dir):
    """{"model", OURS: median sentences/s, "limit": mean target tokens allowed per
    sentence} of kerasllm's exported `translate`, timed in a fresh process."""
    model = cases.random_model(builders(name, tokenizer)[OURS], tokenizer.eos_id)
    signatures = seq2seq_signatures.seq2seq_signatures(
        model, tokenizer, max_source_length=FLAGS.seq_length,
        max_target_length=FLAGS.seq_length, max_beam_size=FLAGS.beam_size,
        beam_size=FLAGS.beam_size)
    # Only what is timed (the trainer also exports translate_with_options and score).
    signatures = {key: signatures[key] for key in ("serving_default", "translate")}
    path = export_saved_model(os.path.join(export_dir, name), signatures, [model, tokenizer],
                              check=False, batching=DECODING)
    seconds, _ = exported.time_signature(path, "translate", {"text": texts}, FLAGS.rounds)
    source_tokens = [int(n) for n in tokenizer.tokenize(tf.constant(texts)).row_lengths()]
    expected = [min(2 * min(s, FLAGS.seq_length - 1) + 10, FLAGS.seq_length)
                for s in source_tokens]
    row = {"model": name, OURS: len(texts) / statistics.median(seconds),
           "limit": float(np.mean(expected))}
    print(f"export {name}: {OURS} {row[OURS]:.2f} sentences/s (up to {row['limit']:.0f} "
          f"target tokens each); {THEIRS} {NO_EXPORT}", flush=True)
    return row


# --- report --------------------------------------------------------------------------------

def report(train, decode, export):
    if train:
        timing.print_training(train, "bucketed Bible pairs (seq: the most tokens a side), "
                                     "real tokens (source + target)")
    if decode:
        print(f"\nbeam-{FLAGS.beam_size} translation in-process, XLA {FLAGS.decode_jit}: "
              f"{FLAGS.decode_batch_size} sentences x {FLAGS.new_tokens} target tokens, "
              f"{FLAGS.rounds} runs, median sentences/s; keras-hub's source tensors "
              f"{'in the sampler cache' if FLAGS.keras_hub_source_in_cache else 'in the closure'}\n")
        print("\n".join(markdown_table(
            ["<model", OURS, THEIRS, "ratio"],
            [[r["model"], speed(r[OURS], 2), speed(r[THEIRS], 2), ratio(r[OURS], r[THEIRS])]
             for r in decode])))
    if export:
        print(f"\nexported `translate`, TF1 session, XLA off: {FLAGS.decode_batch_size} "
              f"sentences per request, beam {FLAGS.beam_size}, {FLAGS.rounds} runs, median "
              f"sentences/s\n")
        print("\n".join(markdown_table(
            ["<model", OURS, "target token limit", THEIRS],
            [[r["model"], speed(r[OURS], 2), speed(r["limit"]), NO_EXPORT] for r in export])))


def main(argv):
    del argv
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    started = time.perf_counter()
    tf.random.set_seed(0)  # before the tokenizer: see kerasllm.training.seeding
    pairs = cases.bible_pairs(FLAGS.train_pairs)
    tokenizer = cases.shared_vocabulary(pairs["train"],
                                FLAGS.vocab_size or registry.get(FLAGS.models[0]).vocab_size)
    texts = pairs["test"][0][:FLAGS.decode_batch_size]
    train, decode, export = [], [], []
    if "train" in FLAGS.parts:
        for name in FLAGS.models:
            train += train_rows(name, tokenizer, pairs["train"])
    if "decode" in FLAGS.parts:
        decode = [decode_row(name, tokenizer, texts) for name in FLAGS.models]
    if "export" in FLAGS.parts:
        with tempfile.TemporaryDirectory() as export_dir:
            export = [export_row(name, tokenizer, texts, export_dir) for name in FLAGS.models]
    report(train, decode, export)
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    app.run(main)
