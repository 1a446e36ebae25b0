"""The benchmark suite: every family against keras-hub, one command.

    python -m bench.all                          # writes docs/benchmarks.md and .png
    python -m bench.all --models=bert_tiny,gpt_tiny --repeats=2 --output=/tmp/b.md
    python -m bench.all --quick --output=/tmp/b.md   # smoke run: tiny sizes, one of each
    python -m bench.all --replot                 # the page and plot again from docs/benchmarks.json
    python -m bench.all --parts=serving          # measure serving only; keep the rest recorded
    python -m bench.all --parts=fit              # Keras fit vs the loop and keras-hub's fit
    python -m bench.all --parts=lora             # LoRA vs full fine-tuning and keras-hub's LoRA
    python -m bench.all --parts=gateway          # the OpenAI gateway vs TF Serving's REST
    python -m bench.all --parts=int8             # an int8 GPT export vs its float32 one, served
    python -m bench.all --parts=decode           # served SmolLM2 decoding vs llama.cpp

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
  serving    (--parts=serving) an exported BERT encoder's latency on a batch of short
             texts against one of long texts, as TF Serving runs it
             (bench/bert_serving_latency.py, --serving_model, its own alternating
             fresh processes, --repeats sweeps of --rounds runs).
  fit        (--parts=fit) Keras `fit` on kerasllm's tasks against the library's own
             training loop and keras-hub's `fit` at --fit_models
             (bench/fit_throughput.py: one process, the three alternating,
             --repeats x --rounds rounds, XLA off and on as above).
  lora       (--parts=lora) LoRA fine-tuning's tokens/s and peak memory against full
             fine-tuning and keras-hub's LoRA at SmolLM2-135M's shape
             (bench/lora_throughput.py at its own sizes: one fresh process per side,
             --repeats alternating sweeps; --quick: its quick run).
  gateway    (--parts=gateway) the OpenAI gateway's latency and 8-client throughput
             against the serving REST API called directly, and chunked streaming
             against one final chunk (bench/gateway_overhead.py; --quick: its quick run).
  int8       (--parts=int8) SmolLM2's int8 export against its float32 one: served new
             tokens/s through the TF1 session, XLA off, and the variables' size
             (bench/int8_serving.py, its own alternating fresh processes, --repeats
             sweeps; --quick: its quick run).
  decode     (--parts=decode) SmolLM2's served greedy decoding (the export in a TF1
             session, XLA off) against llama.cpp at F32 and Q8_0, batch 1 and 8, with
             the export's top op costs (bench/served_decode.py --profile; needs the
             llama_cpp extra).

--parts picks throughput (everything above serving), serving, fit, lora, gateway, int8
and decode; a run of some parts keeps the figures of the others from the record beside
--output.
"""
import json
import math
import os
import statistics
import sys

from absl import app, flags, logging

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import (bert_serving_latency, cases, fit_throughput,  # noqa: E402
                   gateway_overhead, int8_serving, lora_throughput, served_decode,
                   timing)
from bench.tables import markdown_table, speed  # noqa: E402
from kerasllm.models.registry import UnknownModelError  # noqa: E402

FLAGS = flags.FLAGS
PARTS = ["throughput", "serving", "fit", "lora", "gateway", "int8", "decode"]
LATER_PARTS = ("serving", "fit", "lora", "gateway", "int8", "decode")
MODELS = ["bert_tiny", "bert_small", "gpt_tiny", "gpt_4x512", "seq2seq_tiny"]
GENERATION_MODELS = ["gpt_tiny", "gpt_4x512", "seq2seq_tiny"]
MODEL_GARDEN = "model-garden"
DEFAULT_MODEL_GARDEN_PYTHON = os.path.join(ROOT, ".venv-model-garden", "bin", "python")
flags.DEFINE_list("models", MODELS, "Models to train (registry names or bench's own sizes "
                  "in bench/cases.WIDER, e.g. gpt_4x512).")
flags.DEFINE_list("generation_models", GENERATION_MODELS, "Models to generate with.")
flags.DEFINE_list("fit_models", fit_throughput.MODELS, "Models trained by Keras' fit "
                  "(--parts=fit).")
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
                  "off only, no Model Garden, no serving (--parts=serving: bert_tiny's) "
                  "(flags given explicitly win).")
flags.DEFINE_bool("xla", True, "Also time training with XLA (--noxla: XLA off only).")
timing.define_parts(PARTS)
flags.DEFINE_string("serving_model", bert_serving_latency.MINILM,
                    "The encoder whose serving latency is measured (see "
                    "bench/bert_serving_latency.py).")
flags.DEFINE_bool("replot", False,
                  "Measure nothing: rewrite --output and its plot from the figures recorded "
                  "beside it (the .json of the same name).")
QUICK = {"models": ["bert_tiny", "gpt_tiny", "seq2seq_tiny"],
         "generation_models": ["gpt_tiny", "seq2seq_tiny"], "repeats": 1, "rounds": 1,
         "steps_per_round": 1, "batch_size": 2, "seq_length": 16, "new_tokens": 4,
         "matmul_size": 256, "model_garden_python": "", "xla": False,
         "parts": ["throughput"], "serving_model": "bert_tiny",
         "fit_models": fit_throughput.QUICK["models"]}
SETTINGS = ("repeats", "rounds", "steps_per_round", "batch_size", "seq_length", "new_tokens",
            "matmul_size")
PRECISIONS = ("float32", "mixed_bfloat16")
GOALS = {"bert_tiny": 1.3, "gpt_tiny": 1.3, "bert_small": 1.1, "gpt_4x512": 1.1}
MFU_GOAL, BF16_GOAL = 0.8, 1.5


def train_spec(model, side, precision="float32", jit_compile=False):
    return {"kind": "train", "model": model, "side": side, "precision": precision,
            "jit_compile": jit_compile}


def measurements(model_garden):
    """Every measurement of one sweep, as specs for bench.measure."""
    specs = [{"kind": "matmul", "precision": p} for p in PRECISIONS]
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
    return cases.last_json_line(command(spec, model_garden), spec)


def serving():
    """bench/bert_serving_latency.py's figures for --serving_model, and how, when and
    where they were made."""
    return {**made_by(), **cases.last_json_line(
        [sys.executable, "-m", "bench.bert_serving_latency", "--json",
         f"--model={FLAGS.serving_model}", f"--repeats={FLAGS.repeats}",
         f"--rounds={FLAGS.rounds}"], f"serving latency of {FLAGS.serving_model}")}


def fit():
    """bench/fit_throughput.py's figures for --fit_models at this run's sizes, and
    how, when and where they were made."""
    return {**made_by(), **cases.last_json_line(
        [sys.executable, "-m", "bench.fit_throughput", "--json",
         f"--models={','.join(FLAGS.fit_models)}",
         f"--jit_compile={'both' if FLAGS.xla else 'off'}",
         f"--rounds={FLAGS.repeats * FLAGS.rounds}",
         f"--steps_per_round={FLAGS.steps_per_round}", f"--batch_size={FLAGS.batch_size}",
         f"--seq_length={FLAGS.seq_length}"], f"fit throughput of {FLAGS.fit_models}")}


def lora():
    """bench/lora_throughput.py's figures (its --quick run when this run is quick), and
    how, when and where they were made."""
    return {**cases.last_json_line(
        [sys.executable, "-m", lora_throughput.MODULE, "--json", "--output=",
         f"--repeats={FLAGS.repeats}", *(["--quick"] if FLAGS.quick else [])],
        "LoRA throughput"), **made_by()}


def gateway():
    """bench/gateway_overhead.py's figures (its --quick run when this run is quick), and
    how, when and where they were made."""
    return {**cases.last_json_line(
        [sys.executable, "-m", gateway_overhead.MODULE, "--json",
         f"--rounds={FLAGS.repeats * FLAGS.rounds}", *(["--quick"] if FLAGS.quick else [])],
        "gateway overhead"), **made_by()}


def int8():
    """bench/int8_serving.py's figures (its --quick run when this run is quick), and how,
    when and where they were made."""
    return {**cases.last_json_line(
        [sys.executable, "-m", int8_serving.MODULE, "--json", f"--repeats={FLAGS.repeats}",
         *(["--quick"] if FLAGS.quick else [])], "int8 against float32 serving"),
        **made_by()}


def decode():
    """bench/served_decode.py's figures and profile (its --quick run when this run is
    quick), and how, when and where they were made."""
    import importlib.util
    if importlib.util.find_spec("llama_cpp") is None:
        raise cases.BenchmarkError("--parts=decode needs llama.cpp's binding: the llama_cpp "
                                   "extra (docs/export_out.md has the command)")
    return {**cases.last_json_line(
        [sys.executable, "-m", served_decode.MODULE, "--json", "--profile",
         f"--rounds={FLAGS.repeats * FLAGS.rounds}", *(["--quick"] if FLAGS.quick else [])],
        "served decoding against llama.cpp"), **made_by()}


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


def measured(medians, parameters, model_garden, note):
    """The record of one run: its settings and every median, the figures the report
    and the plot are made from (bench.all --replot remakes both from it)."""
    get = lambda **spec: medians.get(key(spec))  # noqa: E731
    matmul = {p: get(kind="matmul", precision=p) for p in PRECISIONS}
    train = []
    for model in FLAGS.models:
        r = {"model": model, "parameters": parameters.get((model, cases.OURS)),
             "ours": get(**train_spec(model, cases.OURS)),
             "theirs": get(**train_spec(model, cases.THEIRS)),
             "ours_xla": get(**train_spec(model, cases.OURS, jit_compile=True)),
             "theirs_xla": get(**train_spec(model, cases.THEIRS, jit_compile=True)),
             "bf16": get(**train_spec(model, cases.OURS, "mixed_bfloat16")),
             "model_garden": get(**train_spec(model, MODEL_GARDEN)) if model_garden else None}
        r.update(ratio=quotient(r["ours"], r["theirs"]),
                 ratio_xla=quotient(r["ours_xla"], r["theirs_xla"]),
                 bf16_ratio=quotient(r["bf16"], r["ours"]),
                 mfu=mfu(model, r["ours"], matmul["float32"]),
                 mfu_theirs=mfu(model, r["theirs"], matmul["float32"]),
                 mfu_bf16=mfu(model, r["bf16"], matmul["mixed_bfloat16"]))
        train.append(r)
    generation = []
    for m in FLAGS.generation_models:
        ours, theirs = (get(kind="generate", model=m, side=side)
                        for side in (cases.OURS, cases.THEIRS))
        generation.append({"model": m, "ours": ours, "theirs": theirs,
                           "ratio": quotient(ours, theirs)})
    return {**made_by(), "settings": {name: FLAGS[name].value for name in SETTINGS},
            "matmul": matmul,
            "model_garden": note, "train": train, "generation": generation}


def made_by():
    return cases.made_by("bench.all")


def quotient(a, b):
    return None if a is None or not b else a / b


def mfu(model, tokens_per_second, matmul_gflops):
    """Model FLOPs utilisation: the model's matmul FLOPs per token x tokens/s over
    the reference matmul's rate; None where a figure is missing."""
    if tokens_per_second is None or not matmul_gflops:
        return None
    return (cases.training_flops_per_token(model, FLAGS.seq_length) * tokens_per_second
            / (matmul_gflops * 1e9))


def percent(value):
    return "n/a" if value is None else f"{value:.0%}"


def times(value):
    return "n/a" if value is None else f"{value:.2f}"


def report(record, output):
    """The markdown page of a record (see `measured`)."""
    settings, matmul = record["settings"], record["matmul"]
    wider = cases.describe_wider(sorted({r["model"] for r in record["train"]}
                                        | {r["model"] for r in record["generation"]}))
    lines = [
        "# Benchmarks", "",
        f"Made by `{record['command']}` on {record['date']}, {record['machine']}; "
        f"bench/all.py says how (`python -m bench.all --replot` remakes this page and its "
        f"plot from {os.path.basename(record_path(output))}). Each figure: median over "
        f"{settings['repeats']} alternating sweeps of one fresh process each "
        f"({settings['rounds']} rounds x {settings['steps_per_round']} steps); batch "
        f"{settings['batch_size']}, seq {settings['seq_length']}. Reference matmul ({settings['matmul_size']}^3) "
        f"in the same sweeps: float32 {speed(matmul['float32'])} GFLOP/s, bfloat16 "
        f"{speed(matmul['mixed_bfloat16'])} GFLOP/s. " + " ".join(wider), "",
        f"![training tokens/s, ratios and generation by model]"
        f"({os.path.basename(plot_path(output))})", "",
        "## Training tokens/s", "",
        "kerasllm / keras-hub: both through kerasllm's step function (same AdamW, batch "
        "and loss), so only the models differ. MFU: model matmul FLOPs x tokens/s over "
        "the reference matmul of the same precision. " + record["model_garden"], ""]
    lines += markdown_table(
        ["<model", "weights", "kerasllm", "keras-hub", "ratio (goal)", "XLA on: kerasllm",
         "keras-hub", "ratio", "MFU kerasllm", "MFU keras-hub", "Model Garden"],
        [[r["model"], speed(r["parameters"]), speed(r["ours"]), speed(r["theirs"]),
          times(r["ratio"]) + (f" ({GOALS[r['model']]})" if r["model"] in GOALS else ""),
          speed(r["ours_xla"]), speed(r["theirs_xla"]), times(r["ratio_xla"]),
          percent(r["mfu"]), percent(r["mfu_theirs"]), speed(r["model_garden"])] for r in record["train"]])
    lines += ["", "## mixed_bfloat16 vs float32 (kerasllm, XLA off)", ""]
    lines += markdown_table(
        ["<model", "float32", "mixed_bfloat16", f"ratio (goal {BF16_GOAL})", "MFU bf16"],
        [[r["model"], speed(r["ours"]), speed(r["bf16"]), times(r["bf16_ratio"]),
          percent(r["mfu_bf16"])]
         for r in record["train"]])
    lines += ["", f"## Generation, new tokens/s (XLA, random weights, "
              f"{settings['new_tokens']} new tokens; GPT: greedy, 4 prompts of 16 tokens; "
              "seq2seq: beam 4, 4 sources of 16 tokens)", ""]
    lines += markdown_table(
        ["<model", "kerasllm", "keras-hub", "ratio"],
        [[r["model"], speed(r["ours"]), speed(r["theirs"]), times(r["ratio"])]
         for r in record["generation"]])
    # The parts measured by scripts of their own: (part, heading, script, a note).
    for part, heading, script, note in (
            ("serving", "BERT serving latency: short texts vs long", bert_serving_latency,
             " Padding to the longest text is what the exports do; to max_seq_length is "
             "`pad_to_max_length=True`, the fixed shape (for accelerators) every export "
             "had before. S: the columns the encoder ran on."),
            ("fit", "Keras fit vs the training loop and keras-hub's fit", fit_throughput, ""),
            ("lora", "LoRA fine-tuning: speed and memory", lora_throughput, ""),
            ("gateway", "OpenAI gateway: overhead and chunked streaming", gateway_overhead,
             " Stock TF Serving cannot stream tokens: chunked streaming re-sends prompt + "
             "text so far for each chunk (docs/serving_gateway.md)."),
            ("int8", "int8 against float32, served", int8_serving,
             " Weight-only int8 (Keras' quantize, kerasllm.models.quantization): every "
             "matmul still runs in float32, on a kernel dequantized per call."),
            ("decode", "Served decoding against llama.cpp", served_decode,
             " llama.cpp keeps its KV cache in float16 (its default)."
             " docs/export_out.md has how the GGUF files are made and checked.")):
        if record.get(part):
            made = record[part]
            lines += ["", f"## {heading}", "",
                      f"Made by `{made['command']}` on {made['date']}, {made['machine']}: "
                      f"{script.description(made)}.{note}", ""]
            lines += script.table(made)
    return "\n".join(lines) + "\n"


def plot_path(output):
    return os.path.splitext(output)[0] + ".png"


def record_path(output):
    return os.path.splitext(output)[0] + ".json"


def plot(record, path):
    """Three panels, each on an axis that fits its figures, every bar labelled with
    its value: training tokens/s (log), kerasllm / keras-hub ratios, generation new
    tokens/s (log)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator
    train, generation = record["train"], record["generation"]
    settings = record["settings"]
    training = [(label, [r[field] for r in train]) for label, field in (
        ("kerasllm float32", "ours"), ("keras-hub float32", "theirs"),
        ("kerasllm float32 XLA", "ours_xla"), ("keras-hub float32 XLA", "theirs_xla"),
        ("kerasllm mixed_bfloat16", "bf16"), ("Model Garden float32", "model_garden"))]
    ratios = [(label, [r[field] for r in train])
              for label, field in (("XLA off", "ratio"), ("XLA on", "ratio_xla"))]
    generating = [(label, [r[field] for r in generation])
                  for label, field in (("kerasllm", "ours"), ("keras-hub", "theirs"))]
    figure, axes = plt.subplots(3, 1, figsize=(10, 12),
                                gridspec_kw={"height_ratios": [3, 2, 2]})
    thousands = FuncFormatter(lambda y, _: f"{y:,.0f}")
    for ax, series, names, title, log, digits in (
            (axes[0], training, [r["model"] for r in train],
             f"Training tokens/s (log scale), batch {settings['batch_size']} x seq "
             f"{settings['seq_length']}", True, 0),
            (axes[1], ratios, [r["model"] for r in train],
             "Training speed, kerasllm / keras-hub (above 1: kerasllm faster)", False, 2),
            (axes[2], generating, [r["model"] for r in generation],
             f"Generation new tokens/s (log scale, XLA, {settings['new_tokens']} new "
             "tokens)", True, 0)):
        series = [(label, values) for label, values in series
                  if any(v is not None for v in values)]
        width = 0.8 / max(1, len(series))
        for i, (label, values) in enumerate(series):
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
            bars = ax.bar(xs, [v or 0 for v in values], width, label=label)
            ax.bar_label(bars, [speed(v, digits) if v else "" for v in values],
                         rotation=90, padding=2, fontsize=7)
        ax.set_xticks(range(len(names)), names)
        ax.set_title(title, fontsize=10)
        if log:
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.yaxis.set_major_formatter(thousands)
            ax.yaxis.set_minor_formatter(FuncFormatter(lambda y, _: ""))
            # From the power of ten below the smallest bar; room above for the labels.
            smallest = min(v for _, values in series for v in values if v)
            ax.set_ylim(10 ** math.floor(math.log10(smallest)), ax.get_ylim()[1] * 3)
        else:
            ax.axhline(1.0, color="gray", linewidth=0.8)
            ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
        ax.grid(axis="y", which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper right", ncol=min(3, len(series)))
    figure.suptitle(f"{record['machine']}, {record['date']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write(record, output):
    """The record (JSON), its report (markdown, returned) and its plot, side by side."""
    text = report(record, output)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(record_path(output), "w") as out:
        json.dump(record, out, indent=1)
        out.write("\n")
    with open(output, "w") as out:
        out.write(text)
    plot(record, plot_path(output))
    return text


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
    if FLAGS.replot:
        with open(record_path(FLAGS.output)) as f:
            print(write(json.load(f), FLAGS.output))
        return
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    # The parts this run does not measure keep their figures from the earlier record.
    earlier = {}
    if set(FLAGS.parts) != set(PARTS) and os.path.exists(record_path(FLAGS.output)):
        with open(record_path(FLAGS.output)) as f:
            earlier = json.load(f)
    if "throughput" not in FLAGS.parts and "train" not in earlier:
        raise app.UsageError(f"--parts={','.join(FLAGS.parts)} adds to the record at "
                             f"{record_path(FLAGS.output)}, which a throughput run writes "
                             "first")
    for model in FLAGS.models + FLAGS.generation_models:
        try:
            cases.family(model)
        except UnknownModelError as error:
            raise app.UsageError(str(error)) from None
    model_garden, note = model_garden_python()
    logging.set_verbosity(logging.INFO)
    record = earlier
    try:
        if "throughput" in FLAGS.parts:
            record = measured(*sweep(model_garden), model_garden, note)
            record.update({part: earlier[part] for part in LATER_PARTS if part in earlier})
        if "serving" in FLAGS.parts:
            record["serving"] = serving()
        if "fit" in FLAGS.parts:
            record["fit"] = fit()
        if "lora" in FLAGS.parts:
            record["lora"] = lora()
        if "gateway" in FLAGS.parts:
            record["gateway"] = gateway()
        if "int8" in FLAGS.parts:
            record["int8"] = int8()
        if "decode" in FLAGS.parts:
            record["decode"] = decode()
    except cases.BenchmarkError as error:
        sys.exit(f"bench.all: {error}")
    print(write(record, FLAGS.output))


if __name__ == "__main__":
    app.run(main)
