"""Plots a run's held-out scores against training steps, read from the TensorBoard
events its trainer wrote under <model_dir>/validation, and prints them as a table.

    python docs/results/plot_validation.py MODEL_DIR OUTPUT.png
"""
import collections
import glob
import os
import sys

import matplotlib
import tensorflow as tf

matplotlib.use("Agg")
from matplotlib import pyplot  # noqa: E402  (after choosing the file-only backend)


def validation_scalars(model_dir):
    """{step: {name: value}} of every scalar in <model_dir>/validation."""
    records = collections.defaultdict(dict)
    for path in sorted(glob.glob(os.path.join(model_dir, "validation", "events.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                records[event.step][value.tag] = float(tf.make_ndarray(value.tensor))
    return dict(sorted(records.items()))


def main(model_dir, output):
    records = validation_scalars(model_dir)
    names = sorted({name for record in records.values() for name in record})
    print("| step | " + " | ".join(names) + " |")
    print("|---:|" + "---:|" * len(names))
    for step, record in records.items():
        print(f"| {step} | " + " | ".join(f"{record.get(n, float('nan')):.2f}" for n in names)
              + " |")
    figure, axes = pyplot.subplots(1, len(names), figsize=(4 * len(names), 3.2))
    for axis, name in zip(axes, names):
        steps = [s for s, r in records.items() if name in r]
        axis.plot(steps, [records[s][name] for s in steps], marker="o")
        axis.set_xlabel("training step")
        axis.set_title(f"held-out {name}")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(output, dpi=100)


if __name__ == "__main__":
    main(*sys.argv[1:])
