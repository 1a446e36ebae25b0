"""GPT throughput: kerasllm GptCausalLM vs keras-hub GPT2CausalLM at the same config.

    python -m bench.gpt_throughput                    # everything below, gpt_tiny and gpt_4x512
    python -m bench.gpt_throughput --quick            # one step of each part, tiny sizes
    python -m bench.gpt_throughput --parts=generate --configs=gpt_tiny --repeats=9

Three parts, each side by side in this one process (alternating runs, median of
--repeats, ratio = kerasllm / keras-hub):

  train     training tokens/s, same AdamW (kerasllm's), batch, sequence length,
            float32, dropout 0.1 everywhere on both sides, XLA off and on:
            GptCausalLM through kerasllm's step function
            (kerasllm.training.loop.make_train_function, see bench/timing.py) vs
            GPT2CausalLM compiled with keras-hub's default loss and trained by Keras'
            own train function (the call `fit` makes, --steps_per_round steps per
            execution). A third run puts keras-hub's model (and keras' loss, as
            GPT2CausalLM compiles it) through kerasllm's step function, which
            separates the models and losses from the loops.
  generate  greedy new tokens/s in-process with XLA: kerasllm.generation.generate in a
            tf.function(jit_compile=True), given GptCausalLM.decoding_weights() as its
            documentation says, vs GPT2CausalLM.generate (greedy sampler,
            token-id inputs, stop_token_ids=None), random weights; the tokens each
            side actually produced are counted.
  export    the `generate` signature of a gpt_tiny exported as the GPT trainer exports
            it (with a SentencePiece tokenizer), run in a fresh process through a TF1
            session with XLA compilation disabled, as TF Serving runs it. keras-hub
            cannot export generation, so this has no ratio.

--models (or --configs) takes GPT registry names and gpt_4x512: gpt_tiny widened to 4
layers of 512 (8 heads, FFN 2048; same vocabulary), which is no registry entry.
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
from bench import timing  # noqa: E402
from bench.cases import gpt_generation_runner, model_config, produced, timed  # noqa: E402
from bench.keras_hub_reference import KerasHubGptCausalLM, keras_hub_gpt2_causal_lm  # noqa: E402
from kerasllm.export import gpt_signatures  # noqa: E402
from kerasllm.export.saved_model import export_saved_model  # noqa: E402
from kerasllm.models import GptCausalLM, GptDecoder, registry  # noqa: E402
from kerasllm.serving.batching import DECODING  # noqa: E402
from kerasllm.tokenizers import train_sentencepiece  # noqa: E402
from kerasllm.training.config import TrainConfig  # noqa: E402
from kerasllm.training.optimizer import create_optimizer  # noqa: E402

FLAGS = flags.FLAGS
timing.define_flags(models=["gpt_tiny", "gpt_4x512"], batch_size=16, seq_length=128)
flags.adopt_module_key_flags(timing)  # lists them in --help
FLAGS.set_default("steps_per_round", 5)
flags.DEFINE_alias("steps", "steps_per_round")
flags.DEFINE_alias("repeats", "rounds")
flags.DEFINE_alias("configs", "models")
flags.DEFINE_bool("quick", False,
                  "Smoke run: gpt_tiny only, XLA off for training, one repeat of one step, "
                  "batch 2 x 16, 4 new tokens, a 400-piece tokenizer for the export "
                  "(flags given explicitly win).")
flags.DEFINE_list("parts", ["train", "generate", "export"], "Which parts to run.")
flags.DEFINE_integer("generate_batch_size", 4, "Prompts per generate call.")
flags.DEFINE_integer("prompt_length", 16, "Tokens per prompt.")
flags.DEFINE_integer("new_tokens", 64, "New tokens per prompt.")
flags.DEFINE_integer("export_vocab_size", None,
                     "SentencePiece pieces of the exported model. Default: gpt_tiny's.")
flags.DEFINE_string("time_export", None,
                    "Internal: time the `generate` signature of this SavedModel in this "
                    "process (XLA disabled, TF1 session) and print the result as JSON.")
flags.DEFINE_string("export_prompts", None, "Internal: JSON list of prompts for --time_export.")

QUICK = {"models": ["gpt_tiny"], "jit_compile": "off", "rounds": 1, "steps_per_round": 1,
         "batch_size": 2, "seq_length": 16, "generate_batch_size": 2, "new_tokens": 4,
         "export_vocab_size": 400}
EXPORT_MODEL = "gpt_tiny"
NO_EXPORT = "n/a: keras-hub cannot export generate"
# keras-hub's model and loss trained by kerasllm's loop: what is left of the training
# ratio once the loops are the same is the models' and losses' own difference.
IN_OUR_LOOP = "keras-hub model, kerasllm loop"
GOALS = {"train": 1.2, "generate": 2.0}  # kerasllm / keras-hub tokens/s to reach


def ratio(medians):
    return medians[timing.OURS] / medians[timing.THEIRS]


# --- training ----------------------------------------------------------------------

def train_rows(name):
    """[(name, xla, ours tok/s, theirs tok/s, ratio, theirs in our loop tok/s, ratio)]
    for each --jit_compile setting."""
    config = model_config(name)
    b, s = FLAGS.batch_size, FLAGS.seq_length
    # One more token than a sequence: keras-hub's batches hold the targets apart.
    window = np.random.default_rng(0).integers(5, config.vocab_size, (b, s + 1)).astype("int32")
    batch = {"token_ids": window[:, :s], "padding_mask": np.ones((b, s), "int32")}
    rows = []
    for jit_compile in {"both": [False, True], "on": [True], "off": [False]}[FLAGS.jit_compile]:
        tasks, runners = {}, {}
        tasks[timing.OURS], runners[timing.OURS] = timing.make_runner(
            lambda: GptCausalLM(GptDecoder(config)), batch, jit_compile)
        tasks[timing.THEIRS], runners[timing.THEIRS] = keras_hub_training_runner(
            config, window, jit_compile)
        tasks[IN_OUR_LOOP], runners[IN_OUR_LOOP] = timing.make_runner(
            lambda: KerasHubGptCausalLM(config), batch, jit_compile)
        if not rows:
            print(f"{name} trainable parameters: " + ", ".join(
                f"{label} {timing.num_trainable(task):,}" for label, task in tasks.items()),
                flush=True)
        medians = timing.alternate(runners, FLAGS.rounds)
        ours, theirs, theirs_in_our_loop = (
            medians[timing.OURS], medians[timing.THEIRS], medians[IN_OUR_LOOP])
        rows.append((name, "on" if jit_compile else "off", ours, theirs, ours / theirs,
                     theirs_in_our_loop, ours / theirs_in_our_loop))
        print(f"train {name} xla={rows[-1][1]}: {timing.OURS} {ours:.0f} tok/s, "
              f"{timing.THEIRS} {theirs:.0f} tok/s, ratio {ours / theirs:.2f}; "
              f"{IN_OUR_LOOP} {theirs_in_our_loop:.0f} tok/s", flush=True)
    return rows


def keras_hub_training_runner(config, window, jit_compile):
    """(model, a callable running --steps_per_round steps of keras-hub's own training
    and returning tokens/s): GPT2CausalLM compiled as keras-hub compiles it (its
    default loss and weighted accuracy), trained by Keras' compiled train function,
    --steps_per_round steps per call as `fit` runs them, with the AdamW that
    kerasllm's side gets from timing.make_runner."""
    model = keras_hub_gpt2_causal_lm(config)
    # timing.make_runner's settings; TrainConfig insists on a model_dir that only the
    # training loop's checkpoints would use.
    train_config = TrainConfig(model_dir=tempfile.gettempdir(), train_steps=10**6,
                               global_batch_size=FLAGS.batch_size, learning_rate=1e-4,
                               warmup_steps=10, jit_compile=jit_compile)
    model.compile(optimizer=create_optimizer(train_config, model), jit_compile=jit_compile,
                  steps_per_execution=FLAGS.steps_per_round)
    s = window.shape[1] - 1
    features = {"token_ids": window[:, :s], "padding_mask": np.ones_like(window[:, :s])}
    dataset = tf.data.Dataset.from_tensors(
        (features, window[:, 1:], np.ones_like(window[:, 1:], "float32"))).repeat()
    # fit builds the optimizer and metrics and traces (compiles) the train function;
    # the timed rounds then make the very call fit makes for each execution.
    model.fit(dataset, steps_per_epoch=FLAGS.steps_per_round, epochs=1, verbose=0,
              shuffle=False)
    iterator = iter(dataset)
    tokens = FLAGS.steps_per_round * window.shape[0] * s

    def timed_round():
        start = time.perf_counter()
        float(model.train_function(iterator)["loss"])  # fetching it waits for the steps
        return tokens / (time.perf_counter() - start)

    return model, timed_round


# --- in-process generation -----------------------------------------------------------

def generate_row(name):
    runners = {side: gpt_generation_runner(name, side, FLAGS.generate_batch_size,
                                           FLAGS.prompt_length, FLAGS.new_tokens)
               for side in (timing.OURS, timing.THEIRS)}
    medians = timing.alternate(runners, FLAGS.rounds)
    row = (name, medians[timing.OURS], medians[timing.THEIRS], ratio(medians))
    print(f"generate {name}: {timing.OURS} {row[1]:.0f} tok/s, {timing.THEIRS} {row[2]:.0f} "
          f"tok/s, ratio {row[3]:.2f}", flush=True)
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
    """(model, exported generate's median new tokens/s) for gpt_tiny."""
    config = registry.get(EXPORT_MODEL)
    lines = synthetic_lines()
    tokenizer = train_sentencepiece(lines, vocab_size=FLAGS.export_vocab_size or config.vocab_size)
    config = config.replace(vocab_size=tokenizer.vocab_size)  # as trainers/train_gpt.py does
    model = GptCausalLM(GptDecoder(config)).build_for_inputs()
    # The </s> row of the tied table set to zero: its logit is then 0, below the best
    # of thousands of random logits, so greedy decoding cannot stop early.
    table = model.backbone.token_embedding.embeddings
    table.assign(tf.tensor_scatter_nd_update(
        table, [[tokenizer.eos_id]], tf.zeros([1, config.hidden_size], table.dtype)))
    n = FLAGS.new_tokens
    path = export_saved_model(
        export_dir, gpt_signatures.gpt_signatures(
            model, tokenizer, max_prompt_length=config.max_sequence_length - n,
            max_new_tokens=n),
        [model, tokenizer], check=False, warmup_inputs=gpt_signatures.warmup_inputs(),
        batching=DECODING)
    prompts = prompt_texts(tokenizer, lines, FLAGS.generate_batch_size, FLAGS.prompt_length)
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--time_export={path}",
         f"--export_prompts={json.dumps(prompts)}", f"--rounds={FLAGS.rounds}"],
        capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"timing the export failed:\n{result.stderr[-3000:]}")
    timings = json.loads(result.stdout.strip().splitlines()[-1])
    produced(timing.OURS + " export", timings["tokens"], FLAGS.generate_batch_size * n)
    row = (EXPORT_MODEL, statistics.median(timings["tokens_per_second"]))
    print(f"export {EXPORT_MODEL}: {timing.OURS} {row[1]:.0f} tok/s; {timing.THEIRS} "
          f"{NO_EXPORT}", flush=True)
    return row


def time_export(path, prompts, repeats):
    """Runs in a fresh process: loads `path` as TF Serving does (TF1 session, XLA
    compilation disabled) and times its `generate` signature on `prompts`."""
    from kerasllm.export.check import disable_xla_compilation  # registers tensorflow-text ops
    disable_xla_compilation()
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        signature = tf.compat.v1.saved_model.loader.load(
            session, ["serve"], path).signature_def["generate"]
        fetches = {key: info.name for key, info in signature.outputs.items()}
        feed = {signature.inputs["prompt"].name: np.array(prompts, dtype=object)}
        session.run(fetches, feed)  # the first run sets things up
        speeds, tokens = [], None
        for _ in range(repeats):
            outputs, seconds = timed(lambda: session.run(fetches, feed))
            # num_tokens leaves out a stop token, which was generated all the same.
            tokens = int(outputs["num_tokens"].sum()
                         + (outputs["finish_reason"] == b"stop_token").sum())
            speeds.append(tokens / seconds)
    print(json.dumps({"tokens": tokens, "tokens_per_second": speeds}))


# --- report ----------------------------------------------------------------------------

def report(train, generation, export):
    b, s = FLAGS.batch_size, FLAGS.seq_length
    gb, p, n = FLAGS.generate_batch_size, FLAGS.prompt_length, FLAGS.new_tokens
    head = f"{timing.OURS:>12}{timing.THEIRS:>12}{'ratio':>8}"
    if train:
        print(f"\ntraining: batch {b}, seq {s}, AdamW, {FLAGS.rounds} rounds x "
              f"{FLAGS.steps_per_round} steps, median tokens/s; {timing.THEIRS} = Keras' "
              f"train step; last two columns: {IN_OUR_LOOP}")
        print(f"{'model':<12}{'xla':<5}{head}{'same loop':>12}{'ratio':>8}")
        for name, jit, ours, theirs, r, same_loop, same_loop_ratio in train:
            print(f"{name:<12}{jit:<5}{ours:>12.0f}{theirs:>12.0f}{r:>8.2f}"
                  f"{same_loop:>12.0f}{same_loop_ratio:>8.2f}")
    if generation:
        print(f"\ngreedy generation in-process, XLA: batch {gb}, prompt {p}, {n} new "
              f"tokens, {FLAGS.rounds} runs, median new tokens/s")
        print(f"{'model':<17}{head}")
        for name, ours, theirs, r in generation:
            print(f"{name:<17}{ours:>12.0f}{theirs:>12.0f}{r:>8.2f}")
    if export:
        print(f"\nexported `generate`, TF1 session, XLA off: batch {gb}, prompt {p}, {n} new "
              f"tokens, {FLAGS.rounds} runs, median new tokens/s")
        for name, ours in export:
            print(f"{name:<17}{ours:>12.0f}  {timing.THEIRS} {NO_EXPORT}")
    ratios = [(f"train {name} xla {jit}", r, GOALS["train"]) for name, jit, _, _, r, *_ in train]
    ratios += [(f"generate {name}", r, GOALS["generate"]) for name, _, _, r in generation]
    if ratios:
        print(f"\nratios ({timing.OURS} / {timing.THEIRS} tokens/s):")
        for label, r, goal in ratios:
            print(f"  {label:<26}{r:6.2f}x  (goal {goal}x: {'met' if r >= goal else 'MISSED'})")


def main(argv):
    del argv
    if FLAGS.time_export:
        time_export(FLAGS.time_export, json.loads(FLAGS.export_prompts), FLAGS.rounds)
        return
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    unknown = set(FLAGS.parts) - {"train", "generate", "export"}
    if unknown:
        raise app.UsageError(f"unknown --parts {sorted(unknown)}")
    train, generation, export = [], [], []
    if "train" in FLAGS.parts:
        for name in FLAGS.models:
            train += train_rows(name)
    if "generate" in FLAGS.parts:
        generation = [generate_row(name) for name in FLAGS.models]
    if "export" in FLAGS.parts:
        with tempfile.TemporaryDirectory() as export_dir:
            export = [export_row(os.path.join(export_dir, EXPORT_MODEL))]
    report(train, generation, export)


if __name__ == "__main__":
    app.run(main)
