"""int8 against float32 served: a GPT exported both ways (kerasllm.models.quantization),
its `generate_with_options` signature run greedily as TF Serving runs it.

    python -m bench.int8_serving               # SmolLM2-135M-Instruct, batch 1 and 8
    python -m bench.int8_serving --quick       # gpt_tiny (random weights), one run
    python -m bench.int8_serving --exports=saved_models/smollm2/1,saved_models/smollm2/2
    python -m bench.all --parts=int8           # the same, recorded in docs/benchmarks.md

--model is "smollm2" (its real weights and tokenizer, from the packaged GGUF) or a GPT
registry name (random weights over a small SentencePiece vocabulary). The float32
model and its int8 copy (`quantized_copy`, the copy `export(quantize="int8")` writes)
are exported with only that signature, --new_tokens at most. Each (side,
batch size) is its own fresh process (bench/exported.py: the export check's TF1
session, XLA compilation disabled, one untimed run, then --rounds runs of one
request); the processes alternate over --repeats sweeps, and a figure is the median
over the sweeps of each process's median. Greedy decoding may end a row early at its
end token: new tokens/s counts the tokens each side produced. Also recorded: the
exports' variables/ bytes, and how many rows' greedy texts the two sides agree on.
--exports times two GPT exports already written instead (float32, int8: e.g.
`trainers.convert --input=smollm2` without and with --quantize=int8).

Only the ratios of one run mean anything on a shared machine.
"""
import os
import statistics
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from bench import exported, timing  # noqa: E402
from bench.tables import markdown_table, print_record, ratio, speed  # noqa: E402

FLAGS = flags.FLAGS
MODULE = "bench.int8_serving"
SMOLLM2 = "smollm2"
SIDES = ("float32", "int8")
# Timed: its per-row max_new_tokens holds an export made elsewhere to --new_tokens.
SIGNATURE = "generate_with_options"
PROMPTS = ["To be, or not to be, that is the question:",
           "Once upon a time, in a kingdom by the sea,",
           "The three most important things to know about rivers are",
           "Write a short letter to a friend about the weather.",
           "In the beginning",
           "My favourite recipe for bread starts with",
           "The history of the printing press",
           "Here is a list of ten animals:"]
QUICK = {"model": "gpt_tiny", "batch_sizes": ["2"], "new_tokens": 4, "repeats": 1,
         "rounds": 1}


def define_flags():
    """The script's flags; bench.all imports `table` without them."""
    flags.DEFINE_string("model", SMOLLM2, f"{SMOLLM2} or a GPT registry name (random weights).")
    flags.DEFINE_list("batch_sizes", ["1", "8"], "Prompts per request, one row each.")
    flags.DEFINE_integer("new_tokens", 32, "Most new tokens per prompt (greedy).")
    flags.DEFINE_integer("rounds", 3, "Timed runs of the request in each process.")
    flags.DEFINE_integer("repeats", 3, "Sweeps over the processes (alternating).")
    flags.DEFINE_list("exports", [], "Two GPT exports to time, float32 then int8, instead "
                      "of exporting --model (their generate signature's own limit).")
    flags.DEFINE_bool("quick", False, "Smoke run: gpt_tiny, batch 2, 4 new tokens, one run "
                      "(flags given explicitly win).")
    flags.DEFINE_bool("json", False, "End with the figures as one JSON line (what bench.all "
                      "records).")


def gpt(model):
    """The float32 GptCausalLM (with its tokenizer) of --model."""
    from kerasllm.models import GptCausalLM
    if model == SMOLLM2:
        return GptCausalLM.from_preset(SMOLLM2)
    from kerasllm.tokenizers import train_sentencepiece
    pieces = train_sentencepiece(PROMPTS * 50, vocab_size=300)
    task = GptCausalLM.from_name(model, vocab_size=pieces.vocab_size).build_for_inputs()
    task.tokenizer = pieces
    return task


def export_generate(root, side, model, new_tokens):
    """root/<side>/1: `model`'s timed signature alone, unchecked (bench's own)."""
    from kerasllm.export.saved_model import export_saved_model
    signatures = model.serving_signatures(max_new_tokens=new_tokens)
    return export_saved_model(os.path.join(root, side),
                              {key: signatures[key] for key in ("serving_default", SIGNATURE)},
                              [model, model.tokenizer], check=False,
                              **model.export_options())


def greedy_request(prompts, new_tokens):
    """generate_with_options' inputs: greedy, at most `new_tokens` per prompt."""
    rows = len(prompts)
    return {"prompt": prompts, "max_new_tokens": [new_tokens] * rows,
            "temperature": [0.0] * rows, "top_k": [0] * rows, "top_p": [1.0] * rows,
            "seed": [0] * rows, "stop": [""] * rows}


def variables_bytes(path):
    folder = os.path.join(path, "variables")
    return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))


def measure(model, batch_sizes, new_tokens, repeats, rounds, exports=()):
    """{"model", settings, "bytes": {side: variables/ bytes}, "rows": [{"batch_size",
    "tokens_per_second": {side: ...}, "same_texts"}]}; see the module's docstring."""
    with tempfile.TemporaryDirectory() as root:
        if exports:
            paths = dict(zip(SIDES, exports))
        else:
            from kerasllm.models import quantization
            float_model = gpt(model)
            paths = {"float32": export_generate(root, "float32", float_model, new_tokens)}
            int8_model = quantization.quantized_copy(float_model)
            del float_model  # its weights are in the export now
            paths["int8"] = export_generate(root, "int8", int8_model, new_tokens)
            del int8_model
        rates = {(side, b): [] for b in batch_sizes for side in SIDES}
        texts = {}
        for _ in range(repeats):
            for side, b in rates:
                prompts = [PROMPTS[i % len(PROMPTS)] for i in range(b)]
                seconds, outputs = exported.time_signature(
                    paths[side], SIGNATURE, greedy_request(prompts, new_tokens), rounds)
                rates[side, b].append(sum(outputs["num_tokens"]) / statistics.median(seconds))
                texts[side, b] = outputs["text"]
        sizes = {side: variables_bytes(path) for side, path in paths.items()}
    rows = [{"batch_size": b,
             "tokens_per_second": {side: statistics.median(rates[side, b]) for side in SIDES},
             "same_texts": sum(f == q for f, q in zip(texts["float32", b], texts["int8", b]))}
            for b in batch_sizes]
    return {"model": model, "new_tokens": new_tokens, "repeats": repeats, "rounds": rounds,
            "exports": list(exports), "bytes": sizes, "rows": rows}


def description(record):
    weights = "real weights" if record["model"] == SMOLLM2 else "random weights"
    return (f"{record['model']} ({weights}), greedy {SIGNATURE} of at most "
            f"{record['new_tokens']} new tokens, float32 export vs its int8 copy "
            f"(kerasllm.models.quantization); TF1 session, XLA off (bench/exported.py); "
            f"median new tokens/s over {record['repeats']} alternating sweeps of one fresh "
            f"process per figure ({record['rounds']} runs each). Variables: float32 "
            f"{record['bytes']['float32'] / 1e6:,.1f} MB, int8 "
            f"{record['bytes']['int8'] / 1e6:,.1f} MB "
            f"({ratio(record['bytes']['int8'], record['bytes']['float32'])}x)")


def table(record):
    """Lines of a markdown table: one row per batch size, new tokens/s of each side,
    int8 / float32, and the rows whose greedy texts agree."""
    return markdown_table(
        ["batch", "float32 tok/s", "int8 tok/s", "int8 / float32", "same text"],
        [[r["batch_size"], speed(r["tokens_per_second"]["float32"], 1),
          speed(r["tokens_per_second"]["int8"], 1),
          ratio(r["tokens_per_second"]["int8"], r["tokens_per_second"]["float32"]),
          f"{r['same_texts']}/{r['batch_size']}"] for r in record["rows"]])


def main(argv):
    del argv
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    if FLAGS.exports and len(FLAGS.exports) != 2:
        raise app.UsageError("--exports takes two exports: float32,int8")
    if FLAGS.model != SMOLLM2:
        from kerasllm.models import registry
        if registry.lookup(FLAGS.model)[0].name != "gpt":
            raise app.UsageError(f"--model takes {SMOLLM2} or a GPT registry name, not "
                                 f"{FLAGS.model}")
    record = measure(FLAGS.model, [int(b) for b in FLAGS.batch_sizes], FLAGS.new_tokens,
                     FLAGS.repeats, FLAGS.rounds, FLAGS.exports)
    print_record(record, description, table, FLAGS.json)


if __name__ == "__main__":
    define_flags()
    app.run(main)
