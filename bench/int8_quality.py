"""What int8 weights cost in quality: float32 against int8 on the same held-out data.

    python -m bench.int8_quality --parts=perplexity               # SmolLM2 on Shakespeare
    python -m bench.int8_quality --parts=accuracy \
        --classifier_exports=saved_models/rt/1,saved_models/rt/2  # float32, int8 exports
    python -m bench.int8_quality --quick --parts=perplexity       # llama_tiny, 512 tokens

  perplexity  SmolLM2-135M-Instruct (GptCausalLM.from_preset("smollm2")) and its int8
              copy (kerasllm.models.quantization.quantized_copy) on the first
              --tokens tokens of the Shakespeare plays train_gpt holds out (its
              --eval_fraction 0.05 split, seed 0, each play followed by </s>), in
              --seq_length windows (kerasllm.evaluation.language_model.HeldOutLoss,
              the trainers' validation loss): the same tokens for both.
  accuracy    two exports of one classifier, float32 and int8 (finetune_bert run once
              without and once with --quantize=int8 on the same --model_dir), each
              asked `classify` on the Rotten Tomatoes test split (2,114 sentences,
              kerasllm.datasets.rt_sentences) through kerasllm.export.load: accuracy of
              each and how many predictions agree.

Prints a markdown table and, with --json, the figures as one JSON line.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from bench import timing  # noqa: E402
from bench.tables import markdown_table  # noqa: E402

FLAGS = flags.FLAGS
SMOLLM2 = "smollm2"
flags.DEFINE_list("parts", ["perplexity", "accuracy"], "perplexity and/or accuracy.")
flags.DEFINE_string("model", SMOLLM2, f"{SMOLLM2} or a GPT registry name (random weights, "
                    "for a smoke run).")
flags.DEFINE_integer("tokens", 20480, "Held-out tokens scored (the stream's first).")
flags.DEFINE_integer("seq_length", 512, "Tokens per scored window.")
flags.DEFINE_integer("batch_size", 4, "Windows per batch.")
flags.DEFINE_list("classifier_exports", [], "float32 export, int8 export (accuracy).")
flags.DEFINE_bool("quick", False, "Smoke run: llama_tiny, 512 tokens in 64-token windows.")
flags.DEFINE_bool("json", False, "End with the figures as one JSON line.")
QUICK = {"model": "llama_tiny", "tokens": 512, "seq_length": 64}
EVAL_FRACTION, SEED = 0.05, 0  # trainers/train_gpt.py's defaults


def held_out_stream(tokenizer, tokens):
    """The first `tokens` tokens of train_gpt's held-out Shakespeare plays."""
    from kerasllm.data.corpus import read_documents, split_documents
    from kerasllm.data.lm_examples import token_stream
    from kerasllm.datasets import shakespeare
    documents = read_documents(shakespeare.default_corpus_files(), document_per_file=True)
    _, held_out = split_documents(documents, EVAL_FRACTION, SEED)
    stream = token_stream(held_out, tokenizer, tokenizer.eos_id)
    if len(stream) < tokens:
        raise app.UsageError(f"--tokens={tokens}: the held-out plays have {len(stream)}")
    return stream[:tokens]


def perplexity():
    from kerasllm.data.lm_examples import lm_dataset
    from kerasllm.evaluation.language_model import HeldOutLoss
    from kerasllm.models import GptCausalLM, quantization
    if FLAGS.model == SMOLLM2:
        model = GptCausalLM.from_preset(SMOLLM2)
    else:
        from kerasllm.tokenizers import train_sentencepiece
        pieces = train_sentencepiece(["the king is dead, long live the queen"] * 50,
                                     vocab_size=278)
        model = GptCausalLM.from_name(FLAGS.model, vocab_size=pieces.vocab_size,
                                      max_sequence_length=FLAGS.seq_length).build_for_inputs()
        model.tokenizer = pieces
    stream = held_out_stream(model.tokenizer, FLAGS.tokens)
    scorer = HeldOutLoss(lm_dataset(stream, seq_length=FLAGS.seq_length,
                                    batch_size=FLAGS.batch_size, training=False),
                         "padding_mask")
    scores = {"float32": scorer(model)}
    # A copy, not the model quantized in place: the scorer's function, traced for
    # the model, would keep reading its float kernels.
    scores["int8"] = scorer(quantization.quantized_copy(model))
    return {"model": FLAGS.model, "tokens": FLAGS.tokens, "seq_length": FLAGS.seq_length,
            **{side: {"loss": s["loss"], "perplexity": s["perplexity"]}
               for side, s in scores.items()}}


def accuracy():
    import numpy as np

    import kerasllm
    from kerasllm.datasets.rt_sentences import load_rt_sentences
    if len(FLAGS.classifier_exports) != 2:
        raise app.UsageError("--classifier_exports takes two exports: float32,int8")
    _, test = load_rt_sentences()
    labels = np.array([example.label for example in test])
    predicted = {}
    for side, path in zip(("float32", "int8"), FLAGS.classifier_exports):
        export = kerasllm.export.load(path)
        predicted[side] = np.concatenate([
            export.classify(text=[e.text for e in test[start:start + 64]])["label_id"]
            for start in range(0, len(test), 64)])
    return {"examples": len(test), "exports": FLAGS.classifier_exports,
            **{side: float(np.mean(p == labels)) for side, p in predicted.items()},
            "agree": int(np.sum(predicted["float32"] == predicted["int8"]))}


def main(argv):
    del argv
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    record, rows = {}, []
    if "perplexity" in FLAGS.parts:
        record["perplexity"] = p = perplexity()
        rows.append([f"{p['model']} perplexity, {p['tokens']:,} held-out Shakespeare tokens",
                     f"{p['float32']['perplexity']:.3f}", f"{p['int8']['perplexity']:.3f}",
                     f"{p['int8']['perplexity'] - p['float32']['perplexity']:+.3f}"])
    if "accuracy" in FLAGS.parts:
        record["accuracy"] = a = accuracy()
        rows.append([f"RT test accuracy (%), {a['examples']:,} sentences; "
                     f"{a['agree']:,} predictions agree",
                     f"{100 * a['float32']:.2f}", f"{100 * a['int8']:.2f}",
                     f"{100 * (a['int8'] - a['float32']):+.2f}"])
    print("\n".join(markdown_table(["<figure", "float32", "int8", "int8 - float32"], rows)))
    if FLAGS.json:
        print(json.dumps(record))


if __name__ == "__main__":
    app.run(main)
