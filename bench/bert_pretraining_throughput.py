"""Training throughput: kerasllm BertPretrainer vs keras-hub BertBackbone + MaskedLMHead.

    python bench/bert_pretraining_throughput.py                 # tiny + small, XLA off and on
    python bench/bert_pretraining_throughput.py --models=bert_tiny --jit_compile=off

Both models train through the same kerasllm step function (same optimizer, same
synthetic batch, same loss), so only the model code differs; see bench/timing.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench import cases, timing  # noqa: E402

FLAGS = flags.FLAGS
timing.define_flags(models=["bert_tiny", "bert_small"], batch_size=16, seq_length=128)
flags.adopt_module_key_flags(timing)  # lists them in --help
flags.DEFINE_integer("num_predictions", cases.NUM_PREDICTIONS, "Masked positions per example.")


def main(argv):
    del argv
    timing.compare_cases(lambda name: cases.training_case(
        name, FLAGS.batch_size, FLAGS.seq_length, FLAGS.num_predictions),
        f"{FLAGS.num_predictions} predictions")


if __name__ == "__main__":
    app.run(main)
