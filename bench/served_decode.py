"""Served greedy decoding against llama.cpp on the same CPU: SmolLM2-135M exported by
kerasllm and run as TF Serving runs it (a fresh process, a TF1 session, XLA off), and
the same weights written as GGUF and run by llama.cpp (llama-cpp-python).

    python -m bench.served_decode              # SmolLM2, 32-token prompts, 128 new tokens
    python -m bench.served_decode --quick      # smoke run: 8 new tokens, one round
    python -m bench.served_decode --profile    # also the export's top op costs, batch 1

Sides, one run, the same prompts (--prompt_tokens-token windows of Shakespeare, given
to both as the same token ids):
  kerasllm f32     the export's `generate` signature (greedy), float32 weights
  llama.cpp f32    the F32 GGUF, --threads threads
  llama.cpp q8_0   the Q8_0 GGUF (8-bit weights, blocks of 32), --threads threads
at batch 1 and batch 8 (llama.cpp: 8 sequences decoded together, one llama_decode per
step, the way llama-server batches). Greedy, every row --new_tokens tokens (a row of
ours that ends early at </s> counts its tokens: tokens/s = new tokens / seconds).
Only the ratios of one run mean anything on a shared machine.

--profile traces one batch-1 request of the export (RunOptions FULL_TRACE) and sums
each op type's time over every node run, the loop's iterations included.
"""
import ctypes
import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from bench import timing  # noqa: E402
from bench.exported import profile_signature, time_signature  # noqa: E402
from bench.tables import markdown_table, print_record, ratio, speed  # noqa: E402

FLAGS = flags.FLAGS
MODULE = "bench.served_decode"
QUICK = {"new_tokens": 8, "rounds": 1, "batch_sizes": ["1", "2"]}
SIDES = ("kerasllm f32", "llama.cpp f32", "llama.cpp q8_0")


def define_flags():
    """The script's flags; bench.all imports `table` without them."""
    flags.DEFINE_string("model", "smollm2", "A GPT preset with its tokenizer.")
    flags.DEFINE_integer("prompt_tokens", 32, "Tokens of each prompt.")
    flags.DEFINE_integer("new_tokens", 128, "Tokens each row generates.")
    flags.DEFINE_list("batch_sizes", ["1", "8"], "Rows per request.")
    flags.DEFINE_integer("rounds", 3, "Timed rounds of each figure (median).")
    flags.DEFINE_integer("threads", 2, "llama.cpp's threads (its spinning threads slow "
                         "down badly when another process holds a core: measure on a "
                         "quiet machine).")
    flags.DEFINE_string("work_dir", None, "Where the export and GGUF files go (kept; "
                        "default: a temporary directory).")
    flags.DEFINE_bool("profile", False, "Also profile one batch-1 request of the export.")
    flags.DEFINE_bool("quick", False, "Smoke run (flags given explicitly win).")
    flags.DEFINE_bool("json", False, "End with the figures as one JSON line.")


def prompt_ids(tokenizer, rows, length):
    """`rows` lists of `length` token ids: consecutive windows of Shakespeare, each
    a text that tokenizes back to exactly those ids."""
    from kerasllm.datasets.shakespeare import default_corpus_files
    with open(default_corpus_files()[0], encoding="utf-8") as f:
        ids = tokenizer.tokenize([f.read()[20000:60000]]).to_list()[0]
    windows, start = [], 0
    while len(windows) < rows:
        window = ids[start:start + length]
        text = tokenizer.detokenize([window]).numpy()[0].decode()
        if tokenizer.tokenize([text]).to_list()[0] == window:
            windows.append(window)
        start += length
    return windows


class LlamaCppBatch:
    """A llama.cpp context for up to `rows` sequences decoded together."""

    def __init__(self, path, rows, n_ctx, threads):
        import llama_cpp
        from llama_cpp import _internals
        self.llama_cpp = llama_cpp
        self.model = llama_cpp.Llama(path, n_ctx=16, verbose=False, n_threads=threads)
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = rows * n_ctx, rows * n_ctx, 512
        params.n_seq_max, params.n_threads, params.n_threads_batch = rows, threads, threads
        self.context = _internals.LlamaContext(model=self.model._model, params=params,
                                               verbose=False)
        self.batch = llama_cpp.llama_batch_init(rows * n_ctx, 0, rows)
        self.vocab = self.model.n_vocab()

    def _decode(self, entries):
        """entries: (token, position, sequence, wants logits); returns the logits
        rows of the entries that want them, in order."""
        batch = self.batch
        batch.n_tokens = len(entries)
        for i, (token, position, sequence, logits) in enumerate(entries):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
            batch.seq_id[i][0], batch.logits[i] = sequence, logits
        if self.llama_cpp.llama_decode(self.context.ctx, batch) != 0:
            raise RuntimeError("llama_decode failed")
        rows = []
        for i, entry in enumerate(entries):
            if entry[3]:
                pointer = self.llama_cpp.llama_get_logits_ith(self.context.ctx, i)
                rows.append(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float * self.vocab))
                            .contents)
        return rows

    def greedy(self, prompts, new_tokens):
        """Each prompt's `new_tokens` greedy tokens (eos not special: fixed work)."""
        import numpy as np
        self.llama_cpp.llama_memory_clear(
            self.llama_cpp.llama_get_memory(self.context.ctx), True)
        entries = [(token, position, row, position == len(ids) - 1)
                   for row, ids in enumerate(prompts) for position, token in enumerate(ids)]
        logits = self._decode(entries)
        outputs = [[] for _ in prompts]
        for step in range(new_tokens):
            tokens = [int(np.argmax(np.ctypeslib.as_array(row))) for row in logits]
            for output, token in zip(outputs, tokens):
                output.append(token)
            if step == new_tokens - 1:
                break
            logits = self._decode([(token, len(prompts[row]) + step, row, True)
                                   for row, token in enumerate(tokens)])
        return outputs

    def close(self):
        self.llama_cpp.llama_batch_free(self.batch)
        self.context.close()
        self.model.close()


def prepare(model_name, work_dir, new_tokens, prompt_tokens):
    """(export path, {"f32": gguf, "q8_0": gguf}, tokenizer) under `work_dir`,
    reusing what an earlier run there made."""
    from kerasllm.models.gpt.causal_lm import GptCausalLM
    model = GptCausalLM.from_preset(model_name)
    model.sequence_length = prompt_tokens + new_tokens
    export_root = os.path.join(work_dir, f"export_{prompt_tokens}_{new_tokens}")
    if not os.path.isdir(os.path.join(export_root, "1")):
        model.export(export_root, version=1, check=False, max_new_tokens=new_tokens)
    ggufs = {}
    for dtype in ("f32", "q8_0"):
        ggufs[dtype] = os.path.join(work_dir, f"{model_name}_{dtype}.gguf")
        if not os.path.exists(ggufs[dtype]):
            model.save_to_gguf(ggufs[dtype], dtype=dtype)
    return os.path.join(export_root, "1"), ggufs, model.tokenizer


def measure(model_name, prompt_tokens, new_tokens, batch_sizes, rounds, work_dir, profile,
            threads):
    export_path, ggufs, tokenizer = prepare(
        model_name, work_dir or tempfile.mkdtemp(prefix="served_decode-"), new_tokens,
        prompt_tokens)
    prompts = prompt_ids(tokenizer, max(batch_sizes), prompt_tokens)
    texts = [tokenizer.detokenize([ids]).numpy()[0].decode() for ids in prompts]
    rates = {side: {} for side in SIDES}
    agree = {}
    for rows in batch_sizes:
        seconds, outputs = time_signature(export_path, "generate", {"prompt": texts[:rows]},
                                          rounds)
        ours = [ids[:n] for ids, n in zip(outputs["token_ids"], outputs["num_tokens"])]
        rates["kerasllm f32"][rows] = sum(outputs["num_tokens"]) / statistics.median(seconds)
        for dtype in ("f32", "q8_0"):
            reference = LlamaCppBatch(ggufs[dtype], rows, prompt_tokens + new_tokens, threads)
            try:
                reference.greedy(prompts[:rows], 2)  # set-up
                times = []
                for _ in range(rounds):
                    start = time.perf_counter()
                    theirs = reference.greedy(prompts[:rows], new_tokens)
                    times.append(time.perf_counter() - start)
            finally:
                reference.close()
            rates[f"llama.cpp {dtype}"][rows] = rows * new_tokens / statistics.median(times)
            agree[f"{dtype}, batch {rows}"] = sum(
                mine == their[:len(mine)] for mine, their in zip(ours, theirs))
    record = {"model": model_name, "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
              "rounds": rounds, "threads": threads, "tokens_per_second": rates,
              "same_greedy_rows": agree}
    if profile:
        record["profile"] = profile_signature(export_path, "generate", {"prompt": texts[:1]})
    return record


def description(record):
    return (f"{record['model']} greedy, prompts of {record['prompt_tokens']} tokens, "
            f"{record['new_tokens']} new tokens per row, median of {record['rounds']} "
            "rounds; kerasllm: the export's `generate` in a fresh process's TF1 session, XLA "
            f"off (as TF Serving); llama.cpp 0.3.36 (llama-cpp-python), {record['threads']} "
            "threads")


def table(record):
    """Lines of markdown: tokens/s of each side at each batch size, and the ratios of
    ours to llama.cpp's; then the profile's top op types when recorded."""
    rates = record["tokens_per_second"]
    lines = markdown_table(
        ["<batch", *SIDES, "ours / llama.cpp f32", "ours / llama.cpp q8_0",
         "same greedy rows (f32, q8_0)"],
        [[rows, *(speed(rates[side][rows], 1) for side in SIDES),
          ratio(rates["kerasllm f32"][rows], rates["llama.cpp f32"][rows]),
          ratio(rates["kerasllm f32"][rows], rates["llama.cpp q8_0"][rows]),
          f"{record['same_greedy_rows'][f'f32, batch {rows}']}/{rows}, "
          f"{record['same_greedy_rows'][f'q8_0, batch {rows}']}/{rows}"]
         for rows in rates["kerasllm f32"]])
    if record.get("profile"):
        lines += ["", "Export, batch 1, share of traced op time by op type:", ""]
        lines += markdown_table(["<op type", "share"],
                                [[op, f"{100 * share:.1f}%"] for op, share in record["profile"]])
    return lines


def main(argv):
    del argv
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    batch_sizes = [int(n) for n in FLAGS.batch_sizes]
    record = measure(FLAGS.model, FLAGS.prompt_tokens, FLAGS.new_tokens, batch_sizes,
                     FLAGS.rounds, FLAGS.work_dir, FLAGS.profile, FLAGS.threads)
    # JSON keys are strings; so are the batch sizes of a recorded run.
    record = json.loads(json.dumps(record))
    print_record(record, description, table, FLAGS.json)


if __name__ == "__main__":
    define_flags()
    app.run(main)
