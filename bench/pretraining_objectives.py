r"""The pretraining objectives at the same compute: each `pretrain_bert --objective`
trains an encoder of one size from scratch on the same corpus, with the same
WordPiece vocabulary, batch and sequence length, for the same training FLOPs;
then `finetune_bert` fine-tunes every encoder on the Rotten Tomatoes sentences
with one recipe and several seeds.

    python -m bench.pretraining_objectives        # writes docs/results/objectives.{md,json}
    python -m bench.pretraining_objectives --model=bert_tiny --reference_steps=20 \
        --seeds=0 --finetune_flags=--epochs=1,--steps_per_epoch=5 --output=/tmp/smoke

The budget is --reference_steps of the first objective listed; another objective
gets as many steps as fit the same FLOPs. A step's FLOPs are TensorFlow's own count
(tf.compat.v1.profiler) of the objective's loss graph on a real batch, times 3 for
the backward pass: ELECTRA pays for its generator, the permutation LM for its
second (query) stream, so they take fewer steps than masked LM.
The objective `none` is the baseline of no pretraining: a fresh encoder of the same
size and vocabulary (saved as a preset), fine-tuned with the same recipe.
Pretraining runs one at a time; fine-tuning runs two at a time, each pinned to a
core where taskset exists. Finished runs are reused (delete --work_dir to redo).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

from absl import app, flags

from bench.tables import markdown_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The recipe every encoder is fine-tuned with (small encoders from scratch want a
# higher rate than MiniLM's 1e-4).
FINETUNE_RECIPE = ["--dataset=rt_sentences", "--learning_rate=3e-4", "--epochs=3",
                   "--max_seq_length=64"]
NO_PRETRAINING = "none"
ACCURACY = re.compile(r"best epoch \S+: eval accuracy ([0-9.]+)")

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "bert_mini", "The encoder size every objective trains.")
flags.DEFINE_list("objectives", ["mlm_nsp", "mlm", "electra", "plm", NO_PRETRAINING],
                  "pretrain_bert --objective values (the first sets the budget) or "
                  f"{NO_PRETRAINING!r}, the fresh encoder.")
flags.DEFINE_integer("reference_steps", 1500, "Steps of the first objective: the budget.")
flags.DEFINE_integer("batch_size", 32, "Pretraining batch size.")
flags.DEFINE_integer("max_seq_length", 128, "Pretraining window length.")
flags.DEFINE_integer("vocab_size", 8000, "WordPiece vocabulary learned from the corpus.")
flags.DEFINE_string("corpus", "shakespeare", "pretrain_bert --corpus.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Fine-tuning seeds.")
flags.DEFINE_list("finetune_flags", [], "Extra finetune_bert flags after the recipe's.")
flags.DEFINE_string("work_dir", "/tmp/pretraining_objectives", "Where the runs go.")
flags.DEFINE_string("output", os.path.join(ROOT, "docs", "results", "objectives"),
                    "Path prefix of the records (.md, .json).")


def trainer_flags(name, objective):
    """A parsed FlagValues of trainers.pretrain_bert for `objective`, as the runs use it."""
    from trainers import pretrain_bert
    fv = flags.FlagValues()
    pretrain_bert.define_flags(fv)
    fv([name, f"--objective={objective}", f"--model={FLAGS.model}",
        f"--max_seq_length={FLAGS.max_seq_length}", f"--batch_size={FLAGS.batch_size}"])
    return fv


def step_flops(objective, vocab_file):
    """Training FLOPs of one step of `objective`: 3 x the profiler's count of its
    loss graph on the first batch of the corpus."""
    import tensorflow as tf
    from kerasllm.tokenizers import wordpiece_vocab
    from kerasllm.tokenizers.wordpiece import WordPieceTokenizer
    from trainers import common, pretrain_bert, shared_flags

    fv = trainer_flags("flops", objective)
    fv.corpus = FLAGS.corpus
    tokenizer = WordPieceTokenizer(wordpiece_vocab.load_vocab(vocab_file))
    config = shared_flags.model_config_from_flags(fv, "bert", "pretrain_bert").replace(
        vocab_size=tokenizer.vocab_size)
    settings = dict(max_seq_length=FLAGS.max_seq_length, global_batch_size=FLAGS.batch_size,
                    max_predictions_per_seq=fv.max_predictions_per_seq,
                    whole_word_masking=False, seed=0)
    dataset_fn = pretrain_bert.corpus_dataset_fn(fv, common.read_corpus(fv), tokenizer,
                                                 settings)
    batch = next(iter(dataset_fn(tf.distribute.InputContext())))
    task = pretrain_bert.pretraining_task(fv, config)
    task.build_for_inputs()
    spec = {name: tf.TensorSpec(value.shape, value.dtype) for name, value in batch.items()}
    loss = tf.function(lambda b: task.compute_loss_and_metrics(b, training=False)[0])
    graph = loss.get_concrete_function(spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return 3 * tf.compat.v1.profiler.profile(graph, options=options).total_float_ops


def learn_vocab(path):
    """The one WordPiece vocabulary every run reads (learned once from the corpus)."""
    if os.path.exists(path):
        return
    from kerasllm.tokenizers import wordpiece_vocab
    from trainers import common
    fv = trainer_flags("vocab", "mlm")
    fv.corpus = FLAGS.corpus
    wordpiece_vocab.save_vocab(
        wordpiece_vocab.learn_wordpiece_vocab(common.read_corpus(fv), FLAGS.vocab_size), path)


def run_logged(args, log_path, cpu=None):
    """Starts `python -m <args>` with its output to log_path (pinned to `cpu`)."""
    command = [sys.executable, "-m", *args]
    if cpu is not None and shutil.which("taskset"):
        command = ["taskset", "-c", str(cpu), *command]
    print(" ".join(args), f"(log: {log_path})", flush=True)
    return subprocess.Popen(command, cwd=ROOT, stdout=open(log_path, "w"),
                            stderr=subprocess.STDOUT)


def finished(process, log_path):
    if process.wait():
        raise RuntimeError(f"{log_path}: exit {process.returncode}")
    with open(log_path, encoding="utf-8") as f:
        return f.read()


def pretrain(objective, steps, vocab_file):
    """Runs (or reuses) one pretraining run -> (its model_dir, its wall-clock seconds)."""
    model_dir = os.path.join(FLAGS.work_dir, objective)
    timing_path = model_dir + ".json"
    if os.path.exists(timing_path) and json.load(open(timing_path))["steps"] == steps:
        return model_dir, json.load(open(timing_path))["seconds"]
    shutil.rmtree(model_dir, ignore_errors=True)
    if objective == NO_PRETRAINING:
        return fresh_encoder_preset(model_dir, vocab_file), 0.0
    start = time.perf_counter()
    finished(run_logged(
        ["trainers.pretrain_bert", f"--objective={objective}", f"--model={FLAGS.model}",
         f"--corpus={FLAGS.corpus}", f"--vocab_file={vocab_file}",
         f"--max_seq_length={FLAGS.max_seq_length}", f"--batch_size={FLAGS.batch_size}",
         f"--train_steps={steps}", f"--checkpoint_every={steps}",
         f"--log_every={max(steps // 10, 1)}", f"--model_dir={model_dir}", "--noexport"],
        model_dir + ".log"), model_dir + ".log")
    seconds = time.perf_counter() - start
    with open(timing_path, "w") as f:
        json.dump({"steps": steps, "seconds": seconds}, f)
    return model_dir, seconds


def fresh_encoder_preset(path, vocab_file):
    """A preset of a freshly initialised --model encoder with the runs' vocabulary,
    which finetune_bert --init_checkpoint reads as it reads a pretraining run."""
    import keras
    from kerasllm.models import BertEncoder, registry
    from kerasllm.pretrained.presets import save_preset
    from kerasllm.tokenizers import WordPieceTokenizer, wordpiece_vocab
    tokenizer = WordPieceTokenizer(wordpiece_vocab.load_vocab(vocab_file))
    keras.utils.set_random_seed(0)
    encoder = BertEncoder(registry.get(FLAGS.model).replace(vocab_size=tokenizer.vocab_size))
    return save_preset(encoder.build_for_inputs(), path, tokenizer=tokenizer)


def finetune_all(jobs):
    """Runs (name, init_checkpoint, seed) jobs two at a time -> {(name, seed): accuracy %}."""
    results, pending, running = {}, list(jobs), []
    while pending or running:
        while pending and len(running) < 2:
            name, init, seed = pending.pop(0)
            directory = os.path.join(FLAGS.work_dir, f"finetune_{name}_{seed}")
            log_path = directory + ".log"
            if os.path.exists(log_path) and ACCURACY.search(open(log_path).read()):
                results[name, seed] = 100 * float(ACCURACY.search(open(log_path).read())[1])
                continue
            shutil.rmtree(directory, ignore_errors=True)
            cpu = {c for c in (0, 1)} - {r[3] for r in running}
            process = run_logged(
                ["trainers.finetune_bert", f"--init_checkpoint={init}", f"--seed={seed}",
                 f"--model_dir={directory}", "--noexport", *FINETUNE_RECIPE,
                 *FLAGS.finetune_flags], log_path, cpu=min(cpu))
            running.append((name, seed, log_path, min(cpu), process))
        if running:
            name, seed, log_path, _, process = running.pop(0)
            results[name, seed] = 100 * float(ACCURACY.search(finished(process, log_path))[1])
    return results


def main(argv):
    del argv
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    vocab_file = os.path.join(FLAGS.work_dir, "vocab.txt")
    learn_vocab(vocab_file)
    flops = {objective: 0 if objective == NO_PRETRAINING else step_flops(objective, vocab_file)
             for objective in FLAGS.objectives}
    budget = FLAGS.reference_steps * flops[FLAGS.objectives[0]]
    steps = {objective: round(budget / flops[objective]) if flops[objective] else 0
             for objective in flops}
    pretrained = {objective: pretrain(objective, steps[objective], vocab_file)
                  for objective in FLAGS.objectives}
    accuracy = finetune_all([(objective, pretrained[objective][0], seed)
                             for objective in FLAGS.objectives for seed in FLAGS.seeds])
    rows, record = [], []
    for objective in FLAGS.objectives:
        scores = [accuracy[objective, seed] for seed in FLAGS.seeds]
        mean = sum(scores) / len(scores)
        spread = (max(scores) - min(scores)) / 2
        seconds = pretrained[objective][1]
        record.append({"objective": objective, "steps": steps[objective],
                       "step_gflops": flops[objective] / 1e9, "pretrain_seconds": seconds,
                       "accuracy": dict(zip(FLAGS.seeds, scores))})
        rows.append([objective, str(steps[objective]), f"{flops[objective] / 1e9:.1f}",
                     f"{seconds / 60:.1f}",
                     *[f"{s:.2f}" for s in scores], f"**{mean:.2f} ± {spread:.2f}**"])
    table = "\n".join(markdown_table(
        ["<objective", "steps", "GFLOPs/step", "pretraining min (wall)",
         *[f"seed {s}" for s in FLAGS.seeds], "mean ± half-range"], rows))
    command = "python -m bench.pretraining_objectives " + " ".join(sys.argv[1:])
    with open(FLAGS.output + ".json", "w") as f:
        json.dump({"command": command, "model": FLAGS.model, "budget_tflops": budget / 1e12,
                   "finetune": FINETUNE_RECIPE + FLAGS.finetune_flags, "runs": record}, f,
                  indent=1)
    with open(FLAGS.output + ".md", "w") as f:
        f.write(f"<!-- {command} -->\n{table}\n")
    print(table)


if __name__ == "__main__":
    app.run(main)
