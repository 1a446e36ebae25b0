"""GPT throughput: kerasllm GptCausalLM vs keras-hub GPT2CausalLM at the same config.

    python -m bench.gpt_throughput                    # everything below, gpt_tiny and gpt_4x512
    python -m bench.gpt_throughput --quick            # one step of each part, tiny sizes
    python -m bench.gpt_throughput --parts=generate --configs=gpt_tiny --repeats=9

Three parts, each side by side in this one process (alternating runs, median of
--rounds, ratio = kerasllm / keras-hub):

  train     training tokens/s, same AdamW (kerasllm's), batch, sequence length,
            float32, dropout 0.1 everywhere on both sides, XLA off and on
            (bench/cases.training_case's models and batch):
            GptCausalLM through kerasllm's step function (bench/timing.py) vs
            GPT2CausalLM compiled with keras-hub's default loss and trained by Keras'
            own train function (the call `fit` makes, --steps_per_round steps per
            execution). A third run puts keras-hub's model (and keras' loss, as
            GPT2CausalLM compiles it) through kerasllm's step function, which
            separates the models and losses from the loops.
  generate  greedy new tokens/s in-process (XLA per --generate_jit):
            bench/cases.gpt_generation_runner, kerasllm.generation.generate given
            GptCausalLM.decoding_weights() vs GPT2CausalLM.generate (greedy sampler,
            token-id inputs, stop_token_ids=None), random weights; the tokens each
            side actually produced are counted.
  export    the `generate` signature of a gpt_tiny exported as the GPT trainer exports
            it (with a SentencePiece tokenizer; only that signature), run in a fresh
            process through a TF1 session with XLA compilation disabled, as TF
            Serving runs it (bench/exported.py). keras-hub cannot export
            generation: no ratio.

--models (or --configs) takes GPT registry names and gpt_4x512, bench's own size
(bench/cases.WIDER: gpt_tiny widened to 4 layers of 512), which is no registry name.
"""
import os
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench import cases, exported, timing  # noqa: E402
from bench.cases import OURS, THEIRS  # noqa: E402
from bench.tables import against_goal, markdown_table, ratio, speed  # noqa: E402
from kerasllm.export import gpt_signatures  # noqa: E402
from kerasllm.export.saved_model import export_saved_model  # noqa: E402
from kerasllm.models import GptCausalLM, GptDecoder, registry  # noqa: E402
from kerasllm.serving.batching import DECODING  # noqa: E402
from kerasllm.tokenizers import train_sentencepiece  # noqa: E402

FLAGS = flags.FLAGS
timing.define_flags(models=["gpt_tiny", "gpt_4x512"], batch_size=16, seq_length=128,
                    steps_per_round=5)
flags.adopt_module_key_flags(timing)  # lists them in --help
flags.DEFINE_bool("quick", False,
                  "Smoke run: gpt_tiny only, XLA off, one round of one step, batch 2 x 16, "
                  "4 new tokens, a 400-piece tokenizer for the export (flags given "
                  "explicitly win).")
timing.define_parts(["train", "generate", "export"])
flags.DEFINE_integer("generate_batch_size", 4, "Prompts per generate call.")
flags.DEFINE_integer("prompt_length", 16, "Tokens per prompt.")
flags.DEFINE_integer("new_tokens", 64, "New tokens per prompt.")
flags.DEFINE_enum("generate_jit", "on", ["off", "on"], "XLA for in-process generation.")
flags.DEFINE_integer("export_vocab_size", None,
                     "SentencePiece pieces of the exported model. Default: gpt_tiny's.")

QUICK = {"models": ["gpt_tiny"], "jit_compile": "off", "rounds": 1, "steps_per_round": 1,
         "batch_size": 2, "seq_length": 16, "generate_batch_size": 2, "new_tokens": 4,
         "generate_jit": "off", "export_vocab_size": 400}
EXPORT_MODEL = "gpt_tiny"
NO_EXPORT = "n/a: keras-hub cannot export generate"
# keras-hub's model and loss trained by kerasllm's loop: what is left of the training
# ratio once the loops are the same is the models' and losses' own difference.
IN_OUR_LOOP = "keras-hub in our step"
GOALS = {"train": 1.2, "generate": 2.0}  # kerasllm / keras-hub tokens/s to reach


# --- training ----------------------------------------------------------------------

def train_factories(name):
    """compare's factories: kerasllm's task and keras-hub's in kerasllm's step
    (timing.same_step), and keras-hub's GPT2CausalLM compiled as keras-hub compiles
    it (its default loss and weighted accuracy) in Keras' own train function
    (timing.make_fit_runner, cases.keras_hub_fit_case)."""
    builders, batch = cases.training_case(name, FLAGS.batch_size, FLAGS.seq_length)
    factories = timing.same_step({OURS: builders[OURS], IN_OUR_LOOP: builders[THEIRS]},
                                 batch)
    factories[THEIRS] = lambda jit_compile: timing.make_fit_runner(
        *cases.keras_hub_fit_case(name, batch), jit_compile)
    return {label: factories[label] for label in (OURS, THEIRS, IN_OUR_LOOP)}


# --- in-process generation -----------------------------------------------------------

def generate_row(name):
    runners = {side: cases.gpt_generation_runner(
        name, side, FLAGS.generate_batch_size, FLAGS.prompt_length, FLAGS.new_tokens,
        jit_compile=FLAGS.generate_jit == "on") for side in (OURS, THEIRS)}
    row = {"model": name, **timing.alternate(runners, FLAGS.rounds)}
    print(f"generate {name}: {OURS} {row[OURS]:.0f} tok/s, {THEIRS} {row[THEIRS]:.0f} "
          f"tok/s", flush=True)
    return row


# --- exported generate -------------------------------------------------------------------

def synthetic_lines(count=20000, seed=0):
    """Lines of made-up words with Zipf-like frequencies: enough distinct text for an
    8000-piece vocabulary, with no download."""
    rng = np.random.default_rng(seed)
    syllables = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(1, 4)))
                 for _ in range(600)]
    words = ["".join(rng.choice(syllables, rng.integers(1, 4))) for _ in range(20000)]
    frequencies = 1.0 / np.arange(1, len(words) + 1)
    picks = rng.choice(len(words), (count, 12), p=frequencies / frequencies.sum())
    return [" ".join(words[i] for i in row) for row in picks]


def prompt_texts(tokenizer, lines, count, length):
    """`count` texts that the export turns into prompts of exactly `length` tokens
    (their pieces after the tokenizer's <s>)."""
    body = length - (tokenizer.bos_id is not None)
    texts = []
    for line in lines:
        ids = tokenizer.tokenize(tf.constant([line + " " + line]))[0][:body]
        text = tokenizer.detokenize(tf.RaggedTensor.from_tensor(ids[None]))[0].numpy().decode()
        if int(tokenizer.tokenize(tf.constant([text])).row_lengths()[0]) == body:
            texts.append(text)
            if len(texts) == count:
                return texts
    raise RuntimeError(f"found no {count} prompts of {length} tokens")


def export_row(export_dir):
    """{"model", OURS: the exported generate's median new tokens/s} for gpt_tiny, with
    random weights whose </s> cannot win (cases.random_model)."""
    config = registry.get(EXPORT_MODEL)
    lines = synthetic_lines()
    tokenizer = train_sentencepiece(lines, vocab_size=FLAGS.export_vocab_size or config.vocab_size)
    config = config.replace(vocab_size=tokenizer.vocab_size)  # as trainers/train_gpt.py does
    model = cases.random_model(lambda: GptCausalLM(GptDecoder(config)), tokenizer.eos_id)
    n = FLAGS.new_tokens
    signatures = gpt_signatures.gpt_signatures(
        model, tokenizer, max_prompt_length=config.max_sequence_length - n, max_new_tokens=n)
    # Only what is timed (the trainer also exports the options, beam and score ones).
    signatures = {key: signatures[key] for key in ("serving_default", "generate")}
    path = export_saved_model(export_dir, signatures, [model, tokenizer], check=False,
                              batching=DECODING)
    prompts = prompt_texts(tokenizer, lines, FLAGS.generate_batch_size, FLAGS.prompt_length)
    seconds, outputs = exported.time_signature(path, "generate", {"prompt": prompts},
                                               FLAGS.rounds)
    # num_tokens leaves out a stop token, which was generated all the same.
    tokens = sum(outputs["num_tokens"]) + outputs["finish_reason"].count("stop_token")
    cases.produced(OURS + " export", tokens, FLAGS.generate_batch_size * n)
    row = {"model": EXPORT_MODEL, OURS: tokens / statistics.median(seconds)}
    print(f"export {EXPORT_MODEL}: {OURS} {row[OURS]:.0f} tok/s; {THEIRS} {NO_EXPORT}",
          flush=True)
    return row


# --- report ----------------------------------------------------------------------------

def report(train, generation, export):
    gb, p, n = FLAGS.generate_batch_size, FLAGS.prompt_length, FLAGS.new_tokens
    if train:
        timing.print_training(train, f"AdamW; {THEIRS} = Keras' own train step, "
                                     f"{IN_OUR_LOOP} = its model in kerasllm's step")
    if generation:
        print(f"\ngreedy generation in-process, XLA {FLAGS.generate_jit}: batch {gb}, "
              f"prompt {p}, {n} new tokens, {FLAGS.rounds} runs, median new tokens/s\n")
        print("\n".join(markdown_table(
            ["<model", OURS, THEIRS, "ratio"],
            [[r["model"], speed(r[OURS]), speed(r[THEIRS]), ratio(r[OURS], r[THEIRS])]
             for r in generation])))
    if export:
        print(f"\nexported `generate`, TF1 session, XLA off: batch {gb}, prompt {p}, {n} new "
              f"tokens, {FLAGS.rounds} runs, median new tokens/s\n")
        print("\n".join(markdown_table(["<model", OURS, THEIRS],
                                       [[r["model"], speed(r[OURS]), NO_EXPORT]
                                        for r in export])))
    goals = [(f"train {r['model']} xla {r['xla']}", r[OURS] / r[THEIRS], GOALS["train"])
             for r in train]
    goals += [(f"generate {r['model']}", r[OURS] / r[THEIRS], GOALS["generate"])
              for r in generation]
    if goals:
        print(f"\nratios ({OURS} / {THEIRS} tokens/s):")
        for label, value, goal in goals:
            print(f"  {label:<26}{against_goal(value, goal)}")


def main(argv):
    del argv
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    train, generation, export = [], [], []
    if "train" in FLAGS.parts:
        for name in FLAGS.models:
            train += timing.compare(name, train_factories(name))
    if "generate" in FLAGS.parts:
        generation = [generate_row(name) for name in FLAGS.models]
    if "export" in FLAGS.parts:
        with tempfile.TemporaryDirectory() as export_dir:
            export = [export_row(os.path.join(export_dir, EXPORT_MODEL))]
    report(train, generation, export)


if __name__ == "__main__":
    app.run(main)
