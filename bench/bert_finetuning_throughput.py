"""Fine-tuning throughput: kerasllm BertClassifier vs keras-hub BertTextClassifier.

    python bench/bert_finetuning_throughput.py            # bert_tiny + minilm_l6, XLA off and on
    python bench/bert_finetuning_throughput.py --models=minilm_l6 --jit_compile=off

Both classifiers (the [CLS] pooler, dropout, one Dense; no keras-hub preprocessor)
train through the same kerasllm step function (same optimizer, same synthetic batch,
same loss), so only the model code differs; see bench/timing.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench import cases, timing  # noqa: E402
from bench.keras_hub_reference import KerasHubBertClassifier  # noqa: E402
from kerasllm.models import BertEncoder, registry  # noqa: E402
from kerasllm.models.bert.classifier import BertClassifier  # noqa: E402

FLAGS = flags.FLAGS
timing.define_flags(models=["bert_tiny", "minilm_l6"], batch_size=32, seq_length=64)
flags.adopt_module_key_flags(timing)  # lists them in --help
flags.DEFINE_integer("num_classes", 2, "Classes of the classification head.")

def synthetic_batch(vocab_size):
    rng = np.random.default_rng(0)
    batch = cases.text_inputs(vocab_size, rng, FLAGS.batch_size, FLAGS.seq_length)
    batch["labels"] = rng.integers(0, FLAGS.num_classes, (FLAGS.batch_size,)).astype("int32")
    return batch


def case(name):
    config = registry.get(name)
    builders = {
        timing.OURS: lambda: BertClassifier(BertEncoder(config), FLAGS.num_classes,
                                            pooling="cls"),
        timing.THEIRS: lambda: KerasHubBertClassifier(config, FLAGS.num_classes),
    }
    return name, builders, synthetic_batch(config.vocab_size)


def main(argv):
    del argv
    timing.compare((case(name) for name in FLAGS.models), f"{FLAGS.num_classes} classes")


if __name__ == "__main__":
    app.run(main)
