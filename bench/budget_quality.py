r"""Quality at a user's budget: kerasllm's trainers with their default flags against
the plainest keras-hub recipe (bench/plain_keras_hub.py: `fit`, Adam at a constant
rate) on the same data, split and tokens, each run as its users would run it.

    python -m bench.budget_quality --family=seq2seq   # 672 steps x 64 verse pairs
    python -m bench.budget_quality --family=gpt       # 560 steps x 32 x 128 tokens
    python -m bench.budget_quality --family=gpt --train_steps=2240 --eval_every=280

seq2seq: `python -m trainers.train_seq2seq` on its default data (English -> Spanish
Bible verses); validation BLEU of greedy translations of the first 400 validation
pairs; at the end test BLEU/chrF of the 1,178 test pairs (whole books), greedy on
both sides and kerasllm's export with its default beam search too.
gpt: `python -m trainers.train_gpt` on Shakespeare less three whole works held out
for test (TEST_WORKS); validation bits per character on train_gpt's own held-out
share of the rest; at the end test bits per character of the three works, of the
weights each side ends with (kerasllm: the best validated, which it exports).

Both sides run at once, each in its own process, so they share the machine alike:
a figure in seconds is a ratio between the sides, not a speed of either. The
keras-hub side starts when the kerasllm trainer has written its SentencePiece
model, and reads the same tokens. Each side records (step, training seconds,
validation scores) every --eval_every steps, the training seconds leaving out
evaluation and the first (tracing) step. The table gives both sides at equal steps
(equal tokens) and at equal training time (each side's best figure within the
time the other took to its last record, and within 5, 15 and 60 minutes where the
runs got that far).
Writes <output>.json, <output>.md and <output>.png.
"""
import glob
import json
import os
import subprocess
import sys
import time

from absl import app, flags

from bench.tables import markdown_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OURS, THEIRS = "kerasllm", "keras-hub"
# Sorted index 6, 20 and 34 of the default Shakespeare corpus: three whole plays.
TEST_WORKS = ("hamlet_gut", "measure_for_measure_gut", "taming_of_the_shrew_gut")
FAMILIES = {
    # trainer, keras-hub task, steps, evaluation interval, batch, keras-hub's rate,
    # the validation score, larger is better
    "seq2seq": ("train_seq2seq", "translation", 672, 112, 64, 5e-4, "bleu", True),
    "gpt": ("train_gpt", "language_model", 560, 112, 32, 1e-3, "bits_per_character", False),
}
BUDGET_MINUTES = (5, 15, 60)

FLAGS = flags.FLAGS
flags.DEFINE_enum("family", "seq2seq", list(FAMILIES), "Which recipe to compare.")
flags.DEFINE_integer("train_steps", None, "Steps of each side. Default: the family's.")
flags.DEFINE_integer("eval_every", None, "Steps between validations. Default: the family's.")
flags.DEFINE_string("work_dir", None, "Where the runs go. Default: /tmp/budget_quality_<family>.")
flags.DEFINE_string("output", None, "Path prefix of the records. Default: "
                    "docs/benchmarks/budget_quality_<family>.")
flags.DEFINE_list("ours_flags", [], "Extra flags for the kerasllm trainer (none: its defaults).")
flags.DEFINE_boolean("report_only", False, "Run nothing: report the finished runs in --work_dir "
                     "(e.g. after rerunning one side by hand with the command it printed).")


def test_corpus_split(work_dir):
    """(training glob, test glob) over the default Shakespeare files, TEST_WORKS out of
    the first and alone in the second (symbolic links under work_dir)."""
    from kerasllm.datasets import shakespeare
    globs = []
    for name, keep in (("train_corpus", False), ("test_corpus", True)):
        directory = os.path.join(work_dir, name)
        os.makedirs(directory, exist_ok=True)
        for path in shakespeare.default_corpus_files():
            if (os.path.splitext(os.path.basename(path))[0] in TEST_WORKS) == keep:
                link = os.path.join(directory, os.path.basename(path))
                if not os.path.lexists(link):
                    os.symlink(path, link)
        globs.append(os.path.join(directory, "*"))
    return globs


def start(name, args, log_path):
    log = open(log_path, "w")
    print(f"{name}: {' '.join(args)}  (log: {log_path})", flush=True)
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT)


def wait(processes):
    for name, process in processes.items():
        if process.wait():
            raise RuntimeError(f"{name} failed (exit {process.returncode}); see its log")


def run_both(work_dir, steps, eval_every, run=True):
    """Runs both sides (with `run`) -> (our model_dir, our export dir, keras-hub's
    history path)."""
    trainer, task, _, _, batch_size, rate, _, _ = FAMILIES[FLAGS.family]
    model_dir, export_dir = (os.path.join(work_dir, name) for name in ("kerasllm", "export"))
    history = os.path.join(work_dir, "keras_hub.json")
    ours = [f"--train_steps={steps}", f"--checkpoint_every={eval_every}",
            f"--model_dir={model_dir}", f"--export_dir={export_dir}", *FLAGS.ours_flags]
    theirs = [f"--task={task}", f"--train_steps={steps}", f"--eval_every={eval_every}",
              f"--batch_size={batch_size}", f"--learning_rate={rate}", f"--history={history}",
              f"--tokenizer_file={os.path.join(model_dir, 'sentencepiece.model')}"]
    if FLAGS.family == "gpt":
        train_glob, test_glob = test_corpus_split(work_dir)
        ours += [f"--corpus={train_glob}", "--document_per_file"]
        theirs += [f"--corpus={train_glob}", f"--test_corpus={test_glob}"]
    if not run:
        return model_dir, export_dir, history
    processes = {OURS: start(OURS, ["-m", f"trainers.{trainer}", *ours],
                             os.path.join(work_dir, "kerasllm.log"))}
    while not os.path.exists(os.path.join(model_dir, "sentencepiece.model")):
        if processes[OURS].poll() is not None:
            wait(processes)
        time.sleep(2)
    processes[THEIRS] = start(THEIRS, ["-m", "bench.plain_keras_hub", *theirs],
                              os.path.join(work_dir, "keras_hub.log"))
    wait(processes)
    return model_dir, export_dir, history


def our_test_scores(model_dir, export_dir):
    """kerasllm's test figures: seq2seq through its newest export (greedy, and its
    default beam search), gpt from its best validated weights."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 (the export's tokenizer ops)
    from kerasllm.data import corpus
    from kerasllm.data.lm_examples import token_stream
    from kerasllm.datasets import bible_parallel
    from kerasllm.evaluation.language_model import documents_loss
    from kerasllm.evaluation.translation import reference_limits, translation_quality
    from kerasllm.evaluation.validation import Validation
    from kerasllm.models import GptCausalLM, GptDecoder
    from kerasllm.pretrained.model_dir import read_model_dir
    from kerasllm.tokenizers import SentencePieceTokenizer

    tokenizer = SentencePieceTokenizer.from_file(os.path.join(model_dir, "sentencepiece.model"))
    if FLAGS.family == "gpt":
        task = GptCausalLM(GptDecoder(read_model_dir(model_dir).config)).build_for_inputs()
        Validation(None, "loss", model_dir, larger_is_better=False).restore_best(task)
        documents = corpus.read_documents(test_corpus_split(FLAGS.work_dir)[1],
                                          document_per_file=True)
        stream = token_stream(documents, tokenizer, tokenizer.eos_id)
        scores = documents_loss(stream, documents, seq_length=128, batch_size=32)(task)
        return {"bits_per_character": scores["bits_per_character"]}
    version = max(os.listdir(export_dir), key=int)
    signature = tf.saved_model.load(os.path.join(export_dir, version)).signatures[
        "translate_with_options"]

    def translate_with_options(text, beam_size, length_penalty, max_length):
        return signature(text=text, beam_size=beam_size, length_penalty=length_penalty,
                         max_length=max_length)

    sources, references = (list(side) for side in bible_parallel.splits()["test"])
    greedy = translation_quality(translate_with_options, sources, references, beam_size=1,
                                 length_penalty=0.0,
                                 max_length=reference_limits(tokenizer, references))
    beam = translation_quality(translate_with_options, sources, references, beam_size=4,
                               length_penalty=0.6)
    return {"bleu": greedy.bleu, "chrf": greedy.chrf,
            "bleu_beam4": beam.bleu, "chrf_beam4": beam.chrf}


def best_within(records, seconds, metric, larger_is_better):
    """The best `metric` of the records whose training time is within `seconds`."""
    values = [r[metric] for r in records if r["train_seconds"] <= seconds]
    if not values:
        return None
    return max(values) if larger_is_better else min(values)


def report(results, metric, larger_is_better):
    """Markdown lines: the curves at each evaluation, then equal-time budgets and
    the test figures."""
    ours, theirs = results[OURS]["records"], results[THEIRS]["records"]
    by_step = [{r["step"]: r for r in side} for side in (ours, theirs)]
    cells = []
    for step in sorted(set(by_step[0]) | set(by_step[1])):
        cells.append([step])
        for side in by_step:  # a side stopped early has no record: n/a
            record = side.get(step)
            cells[-1] += ([f"{record[metric]:.3f}", f"{record['train_seconds']:.0f}"]
                          if record else ["n/a", "n/a"])
    lines = [f"### validation {metric} at equal steps (equal tokens)", ""]
    lines += markdown_table(
        ["step", f"{OURS} {metric}", f"{OURS} s", f"{THEIRS} {metric}", f"{THEIRS} s"], cells)
    budgets = {f"{THEIRS}'s time at step {theirs[-1]['step']}": theirs[-1]["train_seconds"],
               f"{OURS}'s time at step {ours[-1]['step']}": ours[-1]["train_seconds"]}
    budgets.update({f"{m} min": 60.0 * m for m in BUDGET_MINUTES
                    if 60.0 * m <= max(ours[-1]["train_seconds"], theirs[-1]["train_seconds"])})
    cells = []
    for name, seconds in budgets.items():
        values = [best_within(side, seconds, metric, larger_is_better) for side in (ours, theirs)]
        cells.append([name, f"{seconds:.0f}"] + ["n/a" if v is None else f"{v:.3f}"
                                                 for v in values])
    lines += ["", f"### best validation {metric} within a training time", ""]
    lines += markdown_table(["<budget", "seconds", OURS, THEIRS], cells)
    lines += ["", "### test (once, at the end)", ""]
    names = sorted(set(results[OURS]["test"]) | set(results[THEIRS]["test"]))
    lines += markdown_table(["<side", *names], [
        [side] + [f"{results[side]['test'][n]:.3f}" if n in results[side]["test"] else "n/a"
                  for n in names] for side in (OURS, THEIRS)])
    return lines


def plot(results, metric, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for side in (OURS, THEIRS):
        records = results[side]["records"]
        for axis, x in zip(axes, ("step", "train_seconds")):
            axis.plot([r[x] for r in records], [r[metric] for r in records], marker="o",
                      label=side)
            axis.set_xlabel("step" if x == "step" else "training seconds (both at once)")
            axis.set_ylabel(f"validation {metric}")
            axis.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle(f"{FLAGS.family}: kerasllm defaults vs plain keras-hub fit")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv):
    del argv
    _, _, steps, eval_every, _, _, metric, larger_is_better = FAMILIES[FLAGS.family]
    steps = FLAGS.train_steps or steps
    eval_every = FLAGS.eval_every or eval_every
    if steps % eval_every:
        raise SystemExit(f"--train_steps={steps} is not a multiple of --eval_every={eval_every}: "
                         "keras-hub's side evaluates at the end of each fit epoch")
    FLAGS.work_dir = FLAGS.work_dir or f"/tmp/budget_quality_{FLAGS.family}"
    output = FLAGS.output or os.path.join(ROOT, "docs", "benchmarks",
                                          f"budget_quality_{FLAGS.family}")
    if FLAGS.report_only:
        model_dir, export_dir, history = run_both(FLAGS.work_dir, steps, eval_every,
                                                  run=False)
    elif glob.glob(os.path.join(FLAGS.work_dir, "*")):
        raise SystemExit(f"--work_dir={FLAGS.work_dir} is not empty: both runs start afresh")
    else:
        os.makedirs(FLAGS.work_dir, exist_ok=True)
        model_dir, export_dir, history = run_both(FLAGS.work_dir, steps, eval_every)
    with open(os.path.join(model_dir, "validation", "history.json")) as f:
        ours = {"records": json.load(f)["records"]}
    ours["test"] = our_test_scores(model_dir, export_dir)
    with open(history) as f:
        theirs = json.load(f)
    results = {OURS: ours, THEIRS: theirs}
    lines = [f"## {FLAGS.family}: {steps} steps, validation every {eval_every}", "",
             f"    python -m bench.budget_quality --family={FLAGS.family} "
             f"--train_steps={steps} --eval_every={eval_every}"
             + (f" --ours_flags={','.join(FLAGS.ours_flags)}" if FLAGS.ours_flags else ""),
             "", *report(results, metric, larger_is_better)]
    print("\n".join(lines))
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output + ".json", "w") as f:
        json.dump({"steps": steps, "eval_every": eval_every, **results}, f, indent=1)
    with open(output + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    plot(results, metric, output + ".png")
    print(f"wrote {output}.json, .md, .png")


if __name__ == "__main__":
    app.run(main)
