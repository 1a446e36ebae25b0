r"""Distillation on the Rotten Tomatoes sentences: a student distilled from a teacher
classifier against the same student fine-tuned on the labels alone, over seeds,
and how fast each serves.

    python -m trainers.finetune_bert --flagfile=recipes/minilm_rt_sentences.flags  # the teacher
    python -m bench.distillation_rt          # writes docs/results/distillation.{md,json}

Both students are `trainers.distill_bert` runs with the same student (--student,
fresh weights, the teacher's tokenizer), data, schedule and seed; the direct one
has --alpha=0 (the loss is then the labels' cross-entropy alone), the distilled one
--alpha. Accuracy is each run's best epoch on the held-out 20%. Latency: the
exports' `classify` on --batch_size held-out sentences, each export timed in its
own fresh process as TF Serving runs it (bench/exported.py), alternating over
--repeats sweeps; only the ratio between them means anything on a shared machine.
"""
import json
import os
import re
import statistics
import subprocess
import sys

from absl import app, flags

from bench import exported
from bench.tables import markdown_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCURACY = re.compile(r"best epoch \S+: eval accuracy ([0-9.]+)")

FLAGS = flags.FLAGS
flags.DEFINE_string("teacher", os.path.join(ROOT, "saved_models", "minilm_rt_sentences"),
                    "The teacher classifier's export (finetune_bert's RT recipe).")
flags.DEFINE_string("student", "bert_tiny", "distill_bert --student.")
flags.DEFINE_float("alpha", 0.5, "The distilled student's --alpha.")
flags.DEFINE_float("temperature", 2.0, "The distilled student's --temperature.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds of each student.")
flags.DEFINE_list("student_flags", ["--learning_rate=5e-4", "--epochs=6"],
                  "distill_bert flags both students share.")
flags.DEFINE_integer("batch_size", 8, "Sentences per timed request.")
flags.DEFINE_integer("rounds", 20, "Timed requests in each process.")
flags.DEFINE_integer("repeats", 3, "Sweeps over the exports (alternating).")
flags.DEFINE_string("work_dir", "/tmp/distillation_rt", "Where the runs go.")
flags.DEFINE_string("output", os.path.join(ROOT, "docs", "results", "distillation"),
                    "Path prefix of the records (.md, .json).")


def student_run(name, alpha, seed):
    """Runs (or reuses) one distill_bert run -> (accuracy %, its export root)."""
    directory = os.path.join(FLAGS.work_dir, f"{name}_{seed}")
    log_path, export_root = directory + ".log", directory + "_export"
    found = os.path.exists(log_path) and ACCURACY.search(open(log_path).read())
    if not found:
        args = ["trainers.distill_bert", f"--teacher={FLAGS.teacher}",
                f"--student={FLAGS.student}", "--dataset=rt_sentences", f"--alpha={alpha}",
                f"--temperature={FLAGS.temperature}", f"--seed={seed}",
                f"--model_dir={directory}", f"--export_dir={export_root}",
                *FLAGS.student_flags]
        print(" ".join(args), f"(log: {log_path})", flush=True)
        with open(log_path, "w") as log:
            if subprocess.run([sys.executable, "-m", *args], cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT).returncode:
                raise RuntimeError(f"{log_path}: the run failed")
        found = ACCURACY.search(open(log_path).read())
    return 100 * float(found[1]), export_root


def newest_version(export_root):
    versions = [v for v in os.listdir(export_root) if v.isdigit()]
    return os.path.join(export_root, max(versions, key=int))


def latencies(exports):
    """{name: median ms of one classify request} over alternating fresh processes."""
    from kerasllm.datasets.rt_sentences import load_rt_sentences
    texts = [example.text for example in load_rt_sentences()[1][:FLAGS.batch_size]]
    sweeps = {name: [] for name in exports}
    for _ in range(FLAGS.repeats):
        for name, path in exports.items():
            seconds, _ = exported.time_signature(path, "classify", {"text": texts},
                                                 FLAGS.rounds)
            sweeps[name].append(1000 * statistics.median(seconds))
    return {name: statistics.median(values) for name, values in sweeps.items()}


def main(argv):
    del argv
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    students = {"direct (alpha 0)": 0.0, f"distilled (alpha {FLAGS.alpha:g}, "
                f"T {FLAGS.temperature:g})": FLAGS.alpha}
    runs = {name: [student_run(f"alpha_{alpha:g}", alpha, seed) for seed in FLAGS.seeds]
            for name, alpha in students.items()}
    teacher = json.load(open(os.path.join(newest_version(FLAGS.teacher), "assets.extra",
                                          "kerasllm.json")))
    exports = {"teacher": newest_version(FLAGS.teacher),
               **{name: newest_version(results[0][1]) for name, results in runs.items()}}
    milliseconds = latencies(exports)
    rows = [["teacher (MiniLM-L6, its recipe)", "", f"{milliseconds['teacher']:.1f}", "1.00"]]
    record = {"teacher": exports["teacher"], "teacher_scores": teacher.get("scores"),
              "students": {}}
    for name, results in runs.items():
        scores = [accuracy for accuracy, _ in results]
        mean, spread = statistics.mean(scores), (max(scores) - min(scores)) / 2
        rows.append([f"{FLAGS.student} {name}",
                     " / ".join(f"{s:.2f}" for s in scores) + f" → **{mean:.2f} ± {spread:.2f}**",
                     f"{milliseconds[name]:.1f}",
                     f"{milliseconds[name] / milliseconds['teacher']:.2f}"])
        record["students"][name] = {"accuracy": dict(zip(FLAGS.seeds, scores)),
                                    "ms": milliseconds[name]}
    table = "\n".join(markdown_table(
        ["<model", "held-out accuracy % (seeds " + ", ".join(FLAGS.seeds) + ")",
         f"classify ms (batch {FLAGS.batch_size})", "latency / teacher's"], rows))
    command = "python -m bench.distillation_rt " + " ".join(sys.argv[1:])
    record["command"] = command
    with open(FLAGS.output + ".json", "w") as f:
        json.dump(record, f, indent=1)
    with open(FLAGS.output + ".md", "w") as f:
        f.write(f"<!-- {command} -->\n{table}\n")
    print(table)


if __name__ == "__main__":
    app.run(main)
