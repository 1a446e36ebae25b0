"""The benchmark suite: every family against keras-hub, one command.

    python -m bench.all                          # writes docs/benchmarks.md and .png
    python -m bench.all --models=bert_tiny,gpt_tiny --repeats=2 --output=/tmp/b.md
    python -m bench.all --quick --output=/tmp/b.md   # smoke run: tiny sizes, one of each

Every number is one fresh process (`python -m bench.measure ...`, median of its
--rounds timed rounds after an untimed warm-up), and the processes of one sweep
alternate over all measurements, --repeats sweeps; a figure is the median over the
sweeps. Measured, at --batch_size x --seq_length (seq2seq: that many source and
target tokens):

  training   tokens/s of kerasllm and keras-hub (bench/cases.py: both through
             kerasllm's step function and AdamW, so only the models differ), float32,
             XLA off and on; kerasllm under mixed_bfloat16 (XLA off).
  MFU        model FLOPs utilisation: the model's matmul FLOPs per token
             (bench/cases.training_flops_per_token) x tokens/s over a float32 (for
             bfloat16 runs: bfloat16) 2048^3 matmul's rate measured in the same sweeps.
  generation new tokens/s with XLA: GPT greedy, seq2seq beam 4 (random weights).
  Model Garden  BERT pretraining in tf-models-official (bench/model_garden_bert.py),
             float32, XLA off, run by --model_garden_python (its own virtual
             environment: it pins Keras 2); left out, and said so, without it.
"""
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys

from absl import app, flags, logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import cases, timing  # noqa: E402
from kerasllm.models.registry import UnknownModelError  # noqa: E402

FLAGS = flags.FLAGS
MODELS = ["bert_tiny", "bert_small", "gpt_tiny", "gpt_4x512", "seq2seq_tiny"]
GENERATION_MODELS = ["gpt_tiny", "gpt_4x512", "seq2seq_tiny"]
MODEL_GARDEN = "model-garden"
DEFAULT_MODEL_GARDEN_PYTHON = os.path.join(ROOT, ".venv-model-garden", "bin", "python")
flags.DEFINE_list("models", MODELS, "Models to train (registry names or gpt_4x512).")
flags.DEFINE_list("generation_models", GENERATION_MODELS, "Models to generate with.")
flags.DEFINE_integer("repeats", 3, "Sweeps over all measurements (alternating).")
timing.define_size_flags(batch_size=16, seq_length=128, rounds=3, steps_per_round=5)
flags.DEFINE_integer("new_tokens", 64, "Tokens each generation produces.")
flags.DEFINE_integer("matmul_size", 2048, "n of the reference n x n matmul.")
flags.DEFINE_string("model_garden_python", None,
                    "Python of a virtual environment with tf-models-official "
                    f"(default {DEFAULT_MODEL_GARDEN_PYTHON} if it exists).")
flags.DEFINE_string("output", os.path.join(ROOT, "docs", "benchmarks.md"),
                    "Markdown report; the plot goes beside it (.png).")
flags.DEFINE_bool("quick", False,
                  "Smoke run: bert_tiny, gpt_tiny and seq2seq_tiny, one repeat of one "
                  "round of one step, batch 2 x 16, 4 new tokens, a 256^3 matmul, XLA "
                  "off only, no Model Garden (flags given explicitly win).")
flags.DEFINE_bool("xla", True, "Also time training with XLA (--noxla: XLA off only).")
QUICK = {"models": ["bert_tiny", "gpt_tiny", "seq2seq_tiny"],
         "generation_models": ["gpt_tiny", "seq2seq_tiny"], "repeats": 1, "rounds": 1,
         "steps_per_round": 1, "batch_size": 2, "seq_length": 16, "new_tokens": 4,
         "matmul_size": 256, "model_garden_python": "", "xla": False}
GOALS = {"bert_tiny": 1.3, "gpt_tiny": 1.3, "bert_small": 1.1, "gpt_4x512": 1.1}
MFU_GOAL, BF16_GOAL = 0.8, 1.5


class BenchmarkError(RuntimeError):
    pass


def train_spec(model, side, precision="float32", jit_compile=False):
    return {"kind": "train", "model": model, "side": side, "precision": precision,
            "jit_compile": jit_compile}


def measurements(model_garden):
    """Every measurement of one sweep, as specs for bench.measure."""
    specs = [{"kind": "matmul", "precision": p} for p in ("float32", "mixed_bfloat16")]
    for model in FLAGS.models:
        for jit_compile in (False, True) if FLAGS.xla else (False,):
            specs += [train_spec(model, side, jit_compile=jit_compile)
                      for side in (cases.OURS, cases.THEIRS)]
        specs.append(train_spec(model, cases.OURS, "mixed_bfloat16"))
        if model_garden and cases.family(model) == "bert":
            specs.append(train_spec(model, MODEL_GARDEN))
    for model in FLAGS.generation_models:
        specs += [{"kind": "generate", "model": model, "side": side}
                  for side in (cases.OURS, cases.THEIRS)]
    return specs


def key(spec):
    return tuple(sorted(spec.items()))


def command(spec, model_garden):
    common = [f"--rounds={FLAGS.rounds}"]
    if spec["kind"] == "matmul":
        return [sys.executable, "-m", "bench.measure", "--kind=matmul",
                f"--precision={spec['precision']}", f"--matmul_size={FLAGS.matmul_size}",
                *common]
    shape = [f"--batch_size={FLAGS.batch_size}", f"--seq_length={FLAGS.seq_length}",
             f"--steps_per_round={FLAGS.steps_per_round}"]
    if spec["side"] == MODEL_GARDEN:
        return [model_garden, os.path.join(ROOT, "bench", "model_garden_bert.py"),
                f"--model={spec['model']}", "--jit_compile=off", *shape, *common]
    args = [f"--model={spec['model']}", f"--side={spec['side']}", *common]
    if spec["kind"] == "generate":
        return [sys.executable, "-m", "bench.measure", "--kind=generate",
                f"--new_tokens={FLAGS.new_tokens}", *args]
    return [sys.executable, "-m", "bench.measure", "--kind=train",
            f"--precision={spec['precision']}", f"--jit_compile={spec['jit_compile']}",
            *shape, *args]


def run(spec, model_garden):
    """The measuring process's JSON result; BenchmarkError naming the measurement if
    it fails."""
    result = subprocess.run(command(spec, model_garden), cwd=ROOT, capture_output=True,
                            text=True)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise BenchmarkError(f"measuring {spec} failed (exit {result.returncode}):\n"
                             f"{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def sweep(model_garden):
    """{key(spec): [median of each sweep's process]}, the trainable-weight counts."""
    specs = measurements(model_garden)
    values, parameters = {key(s): [] for s in specs}, {}
    for repeat in range(FLAGS.repeats):
        for number, spec in enumerate(specs, 1):
            result = run(spec, model_garden)
            values[key(spec)].append(statistics.median(result["values"]))
            if "trainable_parameters" in result:
                parameters[(spec["model"], spec["side"])] = result["trainable_parameters"]
            logging.info("sweep %d/%d, %d/%d: %s -> %.0f", repeat + 1, FLAGS.repeats, number,
                         len(specs), spec, values[key(spec)][-1])
    return {k: statistics.median(v) for k, v in values.items()}, parameters


def machine():
    """'<lscpu model name>, <n> cores' (the platform's processor where lscpu is missing)."""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next(line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                     if line.startswith("Model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown processor"
    return f"{model}, {os.cpu_count()} cores"


def rows(medians, parameters, model_garden):
    """(training rows, generation rows, matmul GFLOP/s by precision) from the medians."""
    get = lambda **spec: medians.get(key(spec))  # noqa: E731
    matmul = {p: get(kind="matmul", precision=p) for p in ("float32", "mixed_bfloat16")}
    train = []
    for model in FLAGS.models:
        flops = cases.training_flops_per_token(model, FLAGS.seq_length)
        speed = {(side, precision, jit): get(**train_spec(model, side, precision, jit))
                 for side in (cases.OURS, cases.THEIRS) for precision in ("float32",)
                 for jit in (False, True)}
        bf16 = get(**train_spec(model, cases.OURS, "mixed_bfloat16"))
        ours, theirs = speed[(cases.OURS, "float32", False)], speed[(cases.THEIRS, "float32", False)]
        train.append({
            "model": model, "parameters": parameters.get((model, cases.OURS)),
            "ours": ours, "theirs": theirs, "ratio": ours / theirs,
            "ours_xla": speed[(cases.OURS, "float32", True)],
            "theirs_xla": speed[(cases.THEIRS, "float32", True)],
            "bf16": bf16, "bf16_ratio": bf16 / ours,
            "mfu": flops * ours / (matmul["float32"] * 1e9),
            "mfu_theirs": flops * theirs / (matmul["float32"] * 1e9),
            "mfu_bf16": flops * bf16 / (matmul["mixed_bfloat16"] * 1e9),
            "model_garden": get(**train_spec(model, MODEL_GARDEN)) if model_garden else None})
    generation = [{"model": m, "ours": get(kind="generate", model=m, side=cases.OURS),
                   "theirs": get(kind="generate", model=m, side=cases.THEIRS)}
                  for m in FLAGS.generation_models]
    return train, generation, matmul


def ratio(ours, theirs):
    return "n/a" if ours is None or theirs is None else f"{ours / theirs:.2f}"


def report(train, generation, matmul, model_garden_note):
    f = lambda x: "n/a" if x is None else f"{x:,.0f}"  # noqa: E731
    lines = [
        "# Benchmarks", "",
        f"Made by `{shlex.join(['python', '-m', 'bench.all', *sys.argv[1:]])}` on "
        f"{datetime.date.today().isoformat()}, {machine()}; bench/all.py says how. Each "
        f"figure: median over {FLAGS.repeats} alternating sweeps of one fresh process each "
        f"({FLAGS.rounds} rounds x {FLAGS.steps_per_round} steps); batch {FLAGS.batch_size}, "
        f"seq {FLAGS.seq_length}. Reference matmul ({FLAGS.matmul_size}^3) in the same "
        f"sweeps: float32 {matmul['float32']:,.0f} GFLOP/s, bfloat16 "
        f"{matmul['mixed_bfloat16']:,.0f} GFLOP/s.", "",
        f"![training tokens/s by config]({os.path.basename(plot_path(FLAGS.output))})", "",
        "## Training tokens/s", "",
        "kerasllm / keras-hub: both through kerasllm's step function (same AdamW, batch "
        "and loss), so only the models differ. MFU: model matmul FLOPs x tokens/s over "
        "the reference matmul of the same precision. " + model_garden_note, "",
        "| model | weights | kerasllm | keras-hub | ratio (goal) | XLA on: kerasllm | "
        "keras-hub | ratio | MFU kerasllm | MFU keras-hub | Model Garden |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in train:
        goal = f" ({GOALS[r['model']]})" if r["model"] in GOALS else ""
        lines.append(
            f"| {r['model']} | {f(r['parameters'])} | {f(r['ours'])} | {f(r['theirs'])} | "
            f"{r['ratio']:.2f}{goal} | {f(r['ours_xla'])} | {f(r['theirs_xla'])} | "
            f"{ratio(r['ours_xla'], r['theirs_xla'])} | {r['mfu']:.0%} | {r['mfu_theirs']:.0%} | "
            f"{f(r['model_garden'])} |")
    lines += ["", "## mixed_bfloat16 vs float32 (kerasllm, XLA off)", "",
              f"| model | float32 | mixed_bfloat16 | ratio (goal {BF16_GOAL}) | MFU bf16 |",
              "|---|---:|---:|---:|---:|"]
    for r in train:
        lines.append(f"| {r['model']} | {f(r['ours'])} | {f(r['bf16'])} | "
                     f"{r['bf16_ratio']:.2f} | {r['mfu_bf16']:.0%} |")
    lines += ["", f"## Generation, new tokens/s (XLA, random weights, {FLAGS.new_tokens} "
              "new tokens; GPT: greedy, 4 prompts of 16 tokens; seq2seq: beam 4, 4 "
              "sources of 16 tokens)", "",
              "| model | kerasllm | keras-hub | ratio |", "|---|---:|---:|---:|"]
    for r in generation:
        lines.append(f"| {r['model']} | {f(r['ours'])} | {f(r['theirs'])} | "
                     f"{r['ours'] / r['theirs']:.2f} |")
    return "\n".join(lines) + "\n"


def plot_path(output):
    return os.path.splitext(output)[0] + ".png"


def plot(train, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    series = [("kerasllm float32", "ours"), ("keras-hub float32", "theirs"),
              ("kerasllm float32 XLA", "ours_xla"), ("kerasllm mixed_bfloat16", "bf16"),
              ("Model Garden float32", "model_garden")]
    series = [(label, field) for label, field in series
              if any(r[field] is not None for r in train)]
    width = 0.8 / len(series)
    figure, axes = plt.subplots(figsize=(9, 5))
    for i, (label, field) in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(train))]
        axes.bar(xs, [r[field] or 0 for r in train], width, label=label)
    axes.set_xticks(range(len(train)), [r["model"] for r in train])
    axes.set_yscale("log")
    axes.set_ylabel("training tokens/s (log)")
    axes.set_title(f"Training throughput, batch {FLAGS.batch_size} x seq {FLAGS.seq_length}, "
                   f"{machine()}", fontsize=9)
    # Below the axes: above them it would hide the tallest bars.
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08),
                ncol=len(series))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def model_garden_python():
    """(python or None, a sentence for the report)."""
    python = FLAGS.model_garden_python
    if python is None:
        python = DEFAULT_MODEL_GARDEN_PYTHON if os.path.exists(DEFAULT_MODEL_GARDEN_PYTHON) else ""
    if not python:
        return None, ("Model Garden: not measured (no virtual environment with "
                      "tf-models-official; see bench/model_garden_bert.py).")
    if not os.path.exists(python):
        raise app.UsageError(f"--model_garden_python {python} does not exist")
    return python, ("Model Garden: tf-models-official BERT pretraining "
                    "(bench/model_garden_bert.py) in its own virtual environment, its own "
                    "tf.function training step, float32, XLA off.")


def main(argv):
    del argv
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    for model in FLAGS.models + FLAGS.generation_models:
        try:
            cases.family(model)
        except UnknownModelError as error:
            raise app.UsageError(str(error)) from None
    model_garden, note = model_garden_python()
    logging.set_verbosity(logging.INFO)
    try:
        medians, parameters = sweep(model_garden)
    except BenchmarkError as error:
        sys.exit(f"bench.all: {error}")
    train, generation, matmul = rows(medians, parameters, model_garden)
    text = report(train, generation, matmul, note)
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
    with open(FLAGS.output, "w") as out:
        out.write(text)
    plot(train, plot_path(FLAGS.output))
    print(text)


if __name__ == "__main__":
    app.run(main)
