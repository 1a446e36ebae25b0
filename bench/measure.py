"""One benchmark measurement in this process, printed as one JSON line on stdout:
what bench/all.py runs, one fresh process per measurement.

    python -m bench.measure --kind=train --model=bert_small --side=kerasllm \
        --precision=mixed_bfloat16 --jit_compile=off
    python -m bench.measure --kind=generate --model=gpt_tiny --side=keras-hub
    python -m bench.measure --kind=matmul --precision=float32

  train     training tokens/s of one side's task at a model (bench/cases.py: kerasllm
            or keras-hub, both through kerasllm's step function with the same AdamW,
            on one synthetic batch), built under the dtype policy --precision; an
            untimed call traces (and compiles) it, then --rounds rounds of
            --steps_per_round steps.
  generate  new tokens/s with XLA: GPT greedy continuation of --generate_batch_size
            prompts of --prompt_length tokens by --new_tokens; seq2seq beam search
            (--beam_size) over --generate_batch_size random sources of
            --prompt_length tokens, --new_tokens target tokens each.
  matmul    GFLOP/s of an [n, n] x [n, n] matmul (--matmul_size) in a tf.function,
            in --precision's compute dtype: the rate model FLOPs utilisation is
            measured against.

Output: {"kind", "model", "side", "precision", "jit_compile", "values": [one per
round], "unit", "trainable_parameters" (train)}.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench import cases, timing  # noqa: E402
from kerasllm.training.config import PRECISIONS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("kind", "train", ["train", "generate", "matmul"], "What to measure.")
flags.DEFINE_string("model", "bert_tiny", "Registry name or gpt_4x512 (train, generate).")
flags.DEFINE_enum("side", cases.OURS, [cases.OURS, cases.THEIRS], "Whose model.")
flags.DEFINE_enum("precision", "float32", PRECISIONS, "Dtype policy (train, matmul).")
flags.DEFINE_bool("jit_compile", False, "XLA for the training step.")
timing.define_size_flags(batch_size=16, seq_length=128, rounds=3, steps_per_round=5)
flags.DEFINE_integer("generate_batch_size", 4, "Prompts or sources per generation call.")
flags.DEFINE_integer("prompt_length", 16, "Prompt (seq2seq: source) tokens.")
flags.DEFINE_integer("new_tokens", 64, "Tokens each generation produces.")
flags.DEFINE_integer("beam_size", 4, "Seq2seq beams.")
flags.DEFINE_integer("matmul_size", 2048, "n of the matmul.")


def measure_train():
    builders, batch = cases.training_case(FLAGS.model, FLAGS.batch_size, FLAGS.seq_length)
    task, run = timing.make_runner(builders[FLAGS.side], batch, FLAGS.jit_compile,
                                   FLAGS.precision)
    return {"unit": "tokens/s", "values": [run() for _ in range(FLAGS.rounds)],
            "trainable_parameters": timing.num_trainable(task)}


def measure_generate():
    b, p, n = FLAGS.generate_batch_size, FLAGS.prompt_length, FLAGS.new_tokens
    if cases.family(FLAGS.model) == "gpt":
        run = cases.gpt_generation_runner(FLAGS.model, FLAGS.side, b, p, n)
        return {"unit": "new tokens/s", "values": [run() for _ in range(FLAGS.rounds)]}
    if cases.family(FLAGS.model) != "seq2seq":
        raise app.UsageError(f"--kind=generate takes a GPT or seq2seq model, not {FLAGS.model}")
    builders, _ = cases.training_case(FLAGS.model, 1, 1)
    vocab_size = cases.model_config(FLAGS.model).vocab_size
    # Random sources; ids 0-3 stand for padding, <unk>, <s> and </s>.
    source_ids = tf.constant(np.random.default_rng(1).integers(4, vocab_size, (b, p)), tf.int32)
    run = cases.seq2seq_decode_runner(
        builders[FLAGS.side], FLAGS.side, source_ids, tf.ones_like(source_ids), bos_id=2,
        eos_id=3, pad_id=0, new_tokens=n, beam_size=FLAGS.beam_size)
    # sentences/s -> target tokens/s
    return {"unit": "new tokens/s", "values": [run() * n for _ in range(FLAGS.rounds)]}


def measure_matmul():
    n = FLAGS.matmul_size
    dtype = keras.DTypePolicy(FLAGS.precision).compute_dtype
    a, b = (tf.cast(tf.random.stateless_normal((n, n), [seed, 0]), dtype) for seed in (1, 2))
    repeats = max(1, int(2e10 // (2 * n ** 3)))  # ~20 GFLOP a round

    @tf.function
    def products(a, b):
        total = tf.zeros([], tf.float32)
        for _ in tf.range(repeats):  # one call: no Python dispatch in the timing
            total += tf.cast(tf.matmul(a, b)[0, 0], tf.float32)
            a = a + tf.cast(total * 0, dtype)  # a dependence, so no product is skipped
        return total

    products(a, b).numpy()
    values = []
    for _ in range(FLAGS.rounds):
        _, seconds = cases.timed(lambda: products(a, b).numpy())
        values.append(2 * n ** 3 * repeats / seconds / 1e9)
    return {"unit": "GFLOP/s", "values": values}


def main(argv):
    del argv
    result = {"train": measure_train, "generate": measure_generate,
              "matmul": measure_matmul}[FLAGS.kind]()
    print(json.dumps({"kind": FLAGS.kind, "model": FLAGS.model, "side": FLAGS.side,
                      "precision": FLAGS.precision, "jit_compile": FLAGS.jit_compile,
                      **result}))


if __name__ == "__main__":
    app.run(main)
