"""LoRA fine-tuning against full fine-tuning, and against keras-hub's LoRA: training
tokens/s and peak memory at SmolLM2-135M's shape (random weights).

    python -m bench.lora_throughput --output=docs/benchmarks/lora.md   # ~20 min, 2 cores
    python -m bench.lora_throughput --quick        # llama_tiny, one sweep of 2 steps
    python -m bench.all --parts=lora               # the same, recorded in docs/benchmarks.md

Three sides at --model (default smollm2_135m: 30 layers of 576, 9 query / 3
key-value heads, SwiGLU 1536, vocabulary 49,152, rope theta 100,000, tied
embeddings), all float32, XLA off, the same AdamW (timing.train_config) and the
same synthetic batch (cases.training_case) of --batch_size x --seq_length tokens:

  kerasllm LoRA   GptCausalLM with task.enable_lora(rank=--rank, targets="attention"):
                  adapters on the query, key, value and output projections of every
                  block, every other weight frozen; trained by kerasllm.training's
                  step function (timing.make_runner, what the trainers run).
  kerasllm full   the same model without LoRA, every weight trainable, same step.
  kerasllm LoRA + remat
                  kerasllm LoRA with the decoder's gradient checkpointing
                  (finetune_gpt --remat): each block keeps its input alone and runs
                  again in the backward pass.
  kerasllm LoRA, bf16 base
                  kerasllm LoRA with the frozen base built in bfloat16 (finetune_gpt
                  --mixed_precision=mixed_bfloat16), adapters float32.
  keras-hub LoRA  keras-hub 0.32's LlamaCausalLM at the same config
                  (cases.keras_hub_fit_case) with backbone.enable_lora(rank,
                  target_layer_names=HUB_ATTENTION): keras-hub's default targets are
                  query and value only, so the same four projections are named;
                  trained by Keras' own train function as its `fit` runs it
                  (timing.make_fit_runner: its default loss and weighted metrics).
                  Its adapters are keras' EinsumDense ones, low-rank per head
                  ([576, 9, 8] x [8, 64] for a query projection, not [576, 8] x [8,
                  576]), so it trains about 2.6 times as many adapter weights.

Each measurement is one fresh process (`--side=...`: build the model, read the
peak RSS, one untimed call that traces the training function, --rounds rounds of
--steps_per_round steps, the peak RSS again); the processes alternate over
--repeats sweeps, and a figure is the median over the sweeps (tokens/s: of each
process's median round). Peak RSS is the process's ru_maxrss, so it counts
TensorFlow and keras-hub themselves (every side's process imports both) as well as
the weights, gradients, optimizer slots and activations. Only the ratios of one
run mean anything on a shared machine: LoRA / full and kerasllm / keras-hub.
"""
import json
import os
import resource
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

import kerasllm  # noqa: E402,F401
from kerasllm.training.state import global_dtype_policy  # noqa: E402
from bench import cases, timing  # noqa: E402
from bench.tables import markdown_table, ratio, speed  # noqa: E402

FLAGS = flags.FLAGS
MODULE = "bench.lora_throughput"
OURS_LORA, OURS_FULL, HUB_LORA = "kerasllm LoRA", "kerasllm full", "keras-hub LoRA"
OURS_REMAT, OURS_BF16 = "kerasllm LoRA + remat", "kerasllm LoRA, bf16 base"
SIDES = (OURS_LORA, OURS_FULL, HUB_LORA, OURS_REMAT, OURS_BF16)
# (A, B): the table's ratios A / B.
COMPARISONS = ((OURS_LORA, OURS_FULL), (OURS_LORA, HUB_LORA), (OURS_REMAT, OURS_LORA),
               (OURS_BF16, OURS_LORA))
TARGETS = "attention"
# keras-hub's names of the layers kerasllm's "attention" targets: q, k, v, output.
HUB_ATTENTION = ["query", "key", "value", "attention_output"]
MODEL = "smollm2_135m"
QUICK = {"model": "llama_tiny", "repeats": 1, "rounds": 1, "steps_per_round": 2,
         "batch_size": 2, "seq_length": 16, "output": ""}


def define_flags():
    """The script's flags; bench.all imports `description` and `table` without them."""
    flags.DEFINE_string("model", MODEL, "A Llama-style GPT registry config (keras-hub's "
                        "side is its LlamaCausalLM).")
    flags.DEFINE_integer("rank", 8, "LoRA rank of both libraries' adapters.")
    flags.DEFINE_enum("side", None, SIDES, "Measure this one side in this process and print "
                      "its figures as one JSON line (what each sweep's processes run).")
    flags.DEFINE_integer("repeats", 3, "Sweeps over the sides' processes (alternating).")
    timing.define_size_flags(batch_size=8, seq_length=128, rounds=2, steps_per_round=2)
    flags.DEFINE_string("output", os.path.join(cases.ROOT, "docs", "benchmarks", "lora.md"),
                        "Markdown page of the run (empty: none).")
    flags.DEFINE_bool("quick", False, "Smoke run: llama_tiny, one sweep of one round of 2 "
                      "steps, batch 2 x 16, no page (flags given explicitly win).")
    flags.DEFINE_bool("json", False, "End with the figures as one JSON line (what bench.all "
                      "records).")


def peak_rss_mib():
    """This process's peak resident memory so far, MiB (Linux counts ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def runner(side, built_rss):
    """timing's (model, timed round) for `side` at --model; the peak RSS once the model
    is built with its adapters (before the optimizer and the trace) is appended to
    `built_rss`."""
    builders, batch = cases.training_case(FLAGS.model, FLAGS.batch_size, FLAGS.seq_length)
    build_hub, element = cases.keras_hub_fit_case(FLAGS.model, batch)

    def noted(build, prepare):
        def build_and_note():
            model = build()
            prepare(model)
            built_rss.append(peak_rss_mib())
            return model
        return build_and_note

    if side == HUB_LORA:  # keras-hub's functional model is built as it is made
        return timing.make_fit_runner(
            noted(build_hub, lambda model: model.backbone.enable_lora(
                FLAGS.rank, target_layer_names=HUB_ATTENTION)), element, jit_compile=False)
    build = builders[cases.OURS]
    if side == OURS_BF16:
        def build():
            with global_dtype_policy("bfloat16"):
                return builders[cases.OURS]().build_for_inputs()

    def prepare(task):
        if side == OURS_FULL:
            task.build_for_inputs()
            return
        task.enable_lora(FLAGS.rank, targets=TARGETS)  # builds first
        task.backbone.rematerialize = side == OURS_REMAT

    return timing.make_runner(noted(build, prepare), batch, jit_compile=False)


def measure_side(side):
    """One process's figures for `side`: {"side", "values": tokens/s of each round,
    "built_rss_mib", "peak_rss_mib", "trainable_parameters"}."""
    built_rss = []
    model, timed_round = runner(side, built_rss)
    values = [timed_round() for _ in range(FLAGS.rounds)]
    return {"side": side, "values": values, "built_rss_mib": built_rss[0],
            "peak_rss_mib": peak_rss_mib(), "trainable_parameters": timing.num_trainable(model)}


def side_command(side):
    return [sys.executable, "-m", MODULE, f"--side={side}", f"--model={FLAGS.model}",
            f"--rank={FLAGS.rank}", f"--batch_size={FLAGS.batch_size}",
            f"--seq_length={FLAGS.seq_length}", f"--rounds={FLAGS.rounds}",
            f"--steps_per_round={FLAGS.steps_per_round}"]


def measure():
    """{settings, "sides": {side: {"tokens_per_second", "built_rss_mib", "peak_rss_mib",
    "trainable_parameters"}}}: each side's medians over --repeats alternating sweeps of
    one fresh process each."""
    runs = {side: [] for side in SIDES}
    for repeat in range(FLAGS.repeats):
        for side in SIDES:
            result = cases.last_json_line(side_command(side), f"{side} at {FLAGS.model}")
            runs[side].append(result)
            print(f"sweep {repeat + 1}/{FLAGS.repeats}: {side} "
                  f"{statistics.median(result['values']):.0f} tok/s, peak RSS "
                  f"{result['peak_rss_mib']:.0f} MiB", flush=True)
    sides = {}
    for side, results in runs.items():
        sides[side] = {
            "tokens_per_second": statistics.median(statistics.median(r["values"])
                                                   for r in results),
            **{key: statistics.median(r[key] for r in results)
               for key in ("built_rss_mib", "peak_rss_mib")},
            "trainable_parameters": results[0]["trainable_parameters"]}
    return {"model": FLAGS.model, "rank": FLAGS.rank, "batch_size": FLAGS.batch_size,
            "seq_length": FLAGS.seq_length, "repeats": FLAGS.repeats, "rounds": FLAGS.rounds,
            "steps_per_round": FLAGS.steps_per_round, "sides": sides}


def commit():
    """The checked-out commit (short), "+ changes" when the work tree differs from it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=cases.ROOT, capture_output=True,
                              text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + (" + changes" if git("status", "--porcelain", "--untracked-files=no")
                   else "")


def description(record):
    return (f"{record['model']} (random weights), batch {record['batch_size']} x seq "
            f"{record['seq_length']}, float32 (but the bf16 base), XLA off, LoRA rank "
            f"{record['rank']} on "
            "attention's query, key, value and output projections; same AdamW and "
            f"synthetic batch; median over {record['repeats']} alternating sweeps of one "
            f"fresh process per side ({record['rounds']} rounds x "
            f"{record['steps_per_round']} steps after an untimed warm-up). kerasllm: "
            "kerasllm.training's step function; keras-hub: LlamaCausalLM through Keras' "
            "train function (its fit), its per-head EinsumDense adapters. Peak RSS: the "
            "process's ru_maxrss, TensorFlow and keras-hub included "
            "(bench/lora_throughput.py)")


def table(record):
    """Lines of two markdown tables of `measure`'s record: each side's figures, then
    the ratios of COMPARISONS."""
    sides = record["sides"]
    lines = markdown_table(
        ["<side", "trainable weights", "tok/s", "RSS built (MiB)", "peak RSS (MiB)"],
        [[side, speed(s["trainable_parameters"]), speed(s["tokens_per_second"]),
          speed(s["built_rss_mib"]), speed(s["peak_rss_mib"])]
         for side, s in sides.items()])
    lines += [""] + markdown_table(
        ["<A / B", "tok/s A / B", "peak RSS A / B"],
        [[f"{a} / {b}",
          ratio(sides[a]["tokens_per_second"], sides[b]["tokens_per_second"]),
          ratio(sides[a]["peak_rss_mib"], sides[b]["peak_rss_mib"])]
         for a, b in COMPARISONS])
    return lines


def page(record):
    """The markdown page of a run's record (docs/benchmarks/lora.md)."""
    return "\n".join([
        "# LoRA fine-tuning: speed and memory", "",
        f"Made by `{record['command']}` on {record['date']}, {record['machine']}, at "
        f"commit {record['commit']}: {description(record)}.", "", *table(record)]) + "\n"


def main(argv):
    del argv
    if FLAGS.side:
        print(json.dumps(measure_side(FLAGS.side)))
        return
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    if (cases.family(FLAGS.model) != "gpt"
            or cases.model_config(FLAGS.model).position_embedding != "rotary"):
        raise app.UsageError(f"--model takes a Llama-style GPT config, not {FLAGS.model}")
    record = {**cases.made_by(MODULE), "commit": commit(), **measure()}
    print(f"\n{description(record)}\n")
    print("\n".join(table(record)))
    if FLAGS.output:
        with open(FLAGS.output, "w") as out:
            out.write(page(record))
    if FLAGS.json:
        print(json.dumps(record))


if __name__ == "__main__":
    define_flags()
    app.run(main)
