"""Trains the tiny task for many steps, printing each step as it is logged; the process
a preemption test signals. Usage: python -m tests.training.preemption_run MODEL_DIR STEPS"""
import sys

from kerasllm.training.config import TrainConfig
from kerasllm.training.loop import train
from kerasllm.training.preemption import Preempted
from kerasllm.training.strategy import create_strategy
from tests.training.helpers import fixed_examples, repeating_dataset_fn, tiny_task


def main(model_dir, steps):
    config = TrainConfig(model_dir=model_dir, train_steps=steps, global_batch_size=8,
                         log_every=1, steps_per_loop=1, checkpoint_every=1000)
    try:
        result = train(tiny_task, repeating_dataset_fn(fixed_examples(), 8), config,
                       create_strategy("one_device"),
                       on_log=lambda step, metrics: print(f"step {step}", flush=True))
    except Preempted as error:
        print(f"preempted: {error}", flush=True)
        return 3
    print(f"finished at {result.step}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
