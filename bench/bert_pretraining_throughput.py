"""Training throughput: kerasllm BertPretrainer vs keras-hub BertBackbone + MaskedLMHead.

    python bench/bert_pretraining_throughput.py                 # tiny + small, XLA off and on
    python bench/bert_pretraining_throughput.py --models=bert_tiny --jit_compile=off

Both models train through the same kerasllm step function (same optimizer, same
synthetic batch, same loss), so only the model code differs; see bench/timing.py.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

import kerasllm  # noqa: E402,F401
from bench import timing  # noqa: E402
from bench.keras_hub_reference import KerasHubBertPretrainer  # noqa: E402
from kerasllm.models import BertEncoder, BertPretrainer, registry  # noqa: E402

FLAGS = flags.FLAGS
timing.define_flags(models=["bert_tiny", "bert_small"], batch_size=16, seq_length=128)
flags.adopt_module_key_flags(timing)  # lists them in --help
flags.DEFINE_integer("num_predictions", 20, "Masked positions per example.")


def synthetic_batch(vocab_size):
    rng = np.random.default_rng(0)
    b, s, p = FLAGS.batch_size, FLAGS.seq_length, FLAGS.num_predictions
    return timing.text_inputs(vocab_size, rng) | {
        "masked_positions": np.sort(rng.choice(np.arange(1, s), (b, p)), -1).astype("int32"),
        "masked_ids": rng.integers(5, vocab_size, (b, p)).astype("int32"),
        "masked_weights": np.ones((b, p), "float32"),
        "next_sentence_labels": rng.integers(0, 2, (b,)).astype("int32"),
    }


def case(name):
    config = registry.get(name)
    builders = {timing.OURS: lambda: BertPretrainer(BertEncoder(config)),
                timing.THEIRS: lambda: KerasHubBertPretrainer(config)}
    return name, builders, synthetic_batch(config.vocab_size)


def main(argv):
    del argv
    timing.compare((case(name) for name in FLAGS.models),
                   f"{FLAGS.num_predictions} predictions")


if __name__ == "__main__":
    app.run(main)
