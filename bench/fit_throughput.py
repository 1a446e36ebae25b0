"""Keras `fit` on kerasllm's tasks against the library's own training loop and against
keras-hub's `fit`, at the same config.

    python -m bench.fit_throughput                 # bert_small and gpt_4x512, XLA off
    python -m bench.fit_throughput --quick         # bert_tiny and gpt_tiny, one step
    python -m bench.all --parts=fit                # the same, recorded in docs/benchmarks.md

Three ways of training, side by side in this one process (alternating rounds of
--steps_per_round steps after an untimed warm-up, median tokens/s of --rounds):

  loop           kerasllm's task through kerasllm.training's step function
                 (timing.make_runner: what bench.all's training figures time).
  fit            the same task through Keras: `compile(optimizer=...)`, then the train
                 function `fit` calls (TaskModel.train_step, the task's own loss),
                 --steps_per_round steps per execution as the loop runs them per call
                 (timing.make_fit_runner).
  keras-hub fit  keras-hub's own task at the same config through its `fit`, compiled
                 with its default loss and weighted metrics (cases.keras_hub_fit_case:
                 GPT2CausalLM; BertMaskedLM, which has no next-sentence head).

All three use the same AdamW (timing.train_config), synthetic batch, float32 and
--jit_compile. Only the ratios of one run mean anything on a shared machine: fit /
loop (goal LOOP_GOAL) and fit / keras-hub fit (goal HUB_GOAL).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench import cases, timing  # noqa: E402
from bench.tables import against_goal, markdown_table, ratio, speed  # noqa: E402

FLAGS = flags.FLAGS
LOOP, FIT, HUB_FIT = "loop", "fit", "keras-hub fit"
LOOP_GOAL, HUB_GOAL = 0.9, 1.1  # fit / loop, fit / keras-hub fit (issue 25)
MODELS = ["bert_small", "gpt_4x512"]
QUICK = {"models": ["bert_tiny", "gpt_tiny"], "jit_compile": "off", "rounds": 1,
         "steps_per_round": 1, "batch_size": 2, "seq_length": 16}


def define_flags():
    """The script's flags; bench.all imports `description` and `table` without them."""
    timing.define_flags(models=MODELS, batch_size=16, seq_length=128, jit_compile="off",
                        rounds=5, steps_per_round=5)
    flags.DEFINE_bool("quick", False, "Smoke run: bert_tiny and gpt_tiny, XLA off, one "
                      "round of one step, batch 2 x 16 (flags given explicitly win).")
    flags.DEFINE_bool("json", False, "End with the figures as one JSON line (what bench.all "
                      "records).")


def factories(name):
    """timing.compare's factories of the three ways at config `name`."""
    builders, batch = cases.training_case(name, FLAGS.batch_size, FLAGS.seq_length)
    hub = cases.keras_hub_fit_case(name, batch)
    return {LOOP: lambda jit_compile: timing.make_runner(builders[cases.OURS], batch,
                                                         jit_compile),
            FIT: lambda jit_compile: timing.make_fit_runner(builders[cases.OURS], batch,
                                                            jit_compile),
            HUB_FIT: lambda jit_compile: timing.make_fit_runner(*hub, jit_compile)}


def measure():
    """{settings, "rows": timing.compare's rows (one per model and XLA setting), each
    with "fit_over_loop" and "fit_over_keras_hub"}."""
    rows = []
    for name in FLAGS.models:
        rows += timing.compare(name, factories(name))
    for row in rows:
        row.update(fit_over_loop=row[FIT] / row[LOOP], fit_over_keras_hub=row[FIT] / row[HUB_FIT])
    return {"batch_size": FLAGS.batch_size, "seq_length": FLAGS.seq_length,
            "rounds": FLAGS.rounds, "steps_per_round": FLAGS.steps_per_round, "rows": rows}


def description(record):
    return (f"batch {record['batch_size']} x seq {record['seq_length']}, float32, one "
            f"process, the three alternating, median tokens/s of {record['rounds']} rounds "
            f"x {record['steps_per_round']} steps (steps_per_execution "
            f"{record['steps_per_round']} for both fits) after an untimed warm-up; same "
            "AdamW and synthetic batch. loop: kerasllm.training's step function; fit: "
            "Keras' fit on the same task (TaskModel.train_step); keras-hub fit: "
            "GPT2CausalLM, or BertMaskedLM (no next-sentence head), with their default "
            "losses (bench/fit_throughput.py)")


def table(record):
    """Lines of a markdown table of `measure`'s record: tokens/s of the three ways and
    fit's ratios against LOOP_GOAL and HUB_GOAL."""
    return markdown_table(
        ["<model", "<XLA", "loop", "fit", "keras-hub fit", f"fit / loop (goal {LOOP_GOAL})",
         f"fit / keras-hub fit (goal {HUB_GOAL})"],
        [[r["model"], r["xla"], speed(r[LOOP]), speed(r[FIT]), speed(r[HUB_FIT]),
          ratio(r[FIT], r[LOOP]), ratio(r[FIT], r[HUB_FIT])] for r in record["rows"]])


def main(argv):
    del argv
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    for name in FLAGS.models:
        if cases.family(name) not in ("bert", "gpt"):
            raise app.UsageError(f"--models takes BERT and GPT models, not {name}")
    record = measure()
    print(f"\n{description(record)}\n")
    print("\n".join(table(record)))
    print()
    for row in record["rows"]:
        for label, value, goal in (("fit / loop", row["fit_over_loop"], LOOP_GOAL),
                                   ("fit / keras-hub fit", row["fit_over_keras_hub"],
                                    HUB_GOAL)):
            print(f"{row['model']} xla {row['xla']}: {label} {against_goal(value, goal)}")
    if FLAGS.json:
        print(json.dumps(record))


if __name__ == "__main__":
    define_flags()
    app.run(main)
