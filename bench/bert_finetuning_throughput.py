"""Fine-tuning throughput: kerasllm BertClassifier vs keras-hub BertTextClassifier.

    python bench/bert_finetuning_throughput.py            # bert_tiny + minilm_l6, XLA off and on
    python bench/bert_finetuning_throughput.py --models=minilm_l6 --jit_compile=off

Both classifiers (bench/cases.classification_case: the [CLS] pooler, dropout, one
Dense; no keras-hub preprocessor) train through the same kerasllm step function
(same optimizer, same synthetic batch, same loss), so only the model code differs;
see bench/timing.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench import cases, timing  # noqa: E402

FLAGS = flags.FLAGS
timing.define_flags(models=["bert_tiny", "minilm_l6"], batch_size=32, seq_length=64)
flags.adopt_module_key_flags(timing)  # lists them in --help
flags.DEFINE_integer("num_classes", 2, "Classes of the classification head.")


def main(argv):
    del argv
    timing.compare_cases(lambda name: cases.classification_case(
        name, FLAGS.batch_size, FLAGS.seq_length, FLAGS.num_classes),
        f"{FLAGS.num_classes} classes")


if __name__ == "__main__":
    app.run(main)
