"""The OpenAI gateway's cost: the gateway against calling the serving REST API directly,
and chunked streaming against one final chunk.

    python -m bench.gateway_overhead            # gpt_tiny (random weights), 32 new tokens
    python -m bench.gateway_overhead --quick    # smoke run: 1 round, 4 requests per client
    python -m bench.all --parts=gateway         # the same, recorded in docs/benchmarks.md

A random-weight GPT export (--model) is served by kerasllm's development server
(kerasllm.serving.dev_server, TF Serving's REST API) in this process, and the gateway runs as
its own process (`python -m kerasllm.serving.gateway`), as deployed; a second gateway
process streams in chunks of --chunk_tokens. Greedy generation of --new_tokens tokens
from a short prompt (a random model may end a row early at a stop token; such rows
count as they are). Measured side by side, alternating, in
one run:

  latency      one request of one prompt: milliseconds, median of --rounds, direct
               (ServingClient.generate, REST) vs the gateway (/v1/completions).
  throughput   8 (--clients) concurrent clients, --requests each: requests/s, direct vs
               the gateway.
  streaming    a streamed /v1/completions: time to the first chunk and to the end, one
               final chunk vs chunked decoding (--chunk_tokens per chunk; each chunk
               re-sends prompt + text so far and re-runs its prefill).

Only the ratios of one run mean anything on a shared machine.
"""
import concurrent.futures
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from absl import app, flags  # noqa: E402

from bench import timing  # noqa: E402
from kerasllm.serving.dev_server import DevServer  # noqa: E402
from bench.tables import markdown_table, print_record, ratio, speed  # noqa: E402

FLAGS = flags.FLAGS
MODULE = "bench.gateway_overhead"
PROMPT = "To be, or not to be, that is the question:"
QUICK = {"rounds": 1, "requests": 2, "new_tokens": 8, "chunk_tokens": 4}


def define_flags():
    """The script's flags; bench.all imports `table` without them."""
    flags.DEFINE_string("model", "gpt_tiny", "A GPT registry name (random weights).")
    flags.DEFINE_integer("new_tokens", 32, "Tokens each request generates.")
    flags.DEFINE_integer("chunk_tokens", 8, "Tokens per chunk of chunked streaming.")
    flags.DEFINE_integer("clients", 8, "Concurrent clients of the throughput figure.")
    flags.DEFINE_integer("requests", 8, "Requests of each concurrent client.")
    flags.DEFINE_integer("rounds", 5, "Timed rounds of each latency figure (alternating).")
    flags.DEFINE_bool("quick", False, "Smoke run (flags given explicitly win).")
    flags.DEFINE_bool("json", False, "End with the figures as one JSON line (what bench.all "
                      "records).")


def export_gpt(root, model, new_tokens):
    """A random-weight GPT export under root/gpt/1 with a SentencePiece vocabulary of
    Shakespeare-like text."""
    from kerasllm.export.gpt_signatures import gpt_signatures, warmup_inputs
    from kerasllm.export.saved_model import export_saved_model
    from kerasllm.models import GptCausalLM
    from kerasllm.tokenizers import train_sentencepiece
    pieces = train_sentencepiece([PROMPT, "the king is dead, long live the queen"] * 100,
                                 vocab_size=285)
    gpt = GptCausalLM.from_name(model, vocab_size=pieces.vocab_size).build_for_inputs()
    return export_saved_model(os.path.join(root, "gpt"), gpt_signatures(
        gpt, pieces, max_prompt_length=64, max_new_tokens=new_tokens), [gpt, pieces],
        check=False, warmup_inputs=warmup_inputs())


def start_gateway(serving_url, chunk_tokens):
    """A gateway process; (process, its base URL)."""
    from tests.ports import free_ports
    port = free_ports(1)[0]
    process = subprocess.Popen(
        [sys.executable, "-m", "kerasllm.serving.gateway", f"--serving={serving_url}",
         f"--port={port}", f"--stream_chunk_tokens={chunk_tokens}"], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1).read()
            return process, url
        except OSError:
            if process.poll() is not None:
                raise RuntimeError("the gateway process ended before it answered") from None
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the gateway did not start in 60 s")


def post(url, body):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        return response.read()


def completion(new_tokens):
    return {"model": "gpt", "prompt": PROMPT, "max_tokens": new_tokens, "temperature": 0}


def direct_call(serving_url, new_tokens):
    from kerasllm.serving.client import ServingClient
    client = ServingClient("gpt", rest_url=serving_url)
    return lambda: client.generate([PROMPT], max_new_tokens=new_tokens)


def gateway_call(gateway, new_tokens):
    body = completion(new_tokens)
    return lambda: post(f"{gateway}/v1/completions", body)


def stream_call(gateway, new_tokens):
    """A streamed completion: () -> (seconds to the first chunk, seconds to the end)."""
    def call():
        body = {**completion(new_tokens), "stream": True}
        request = urllib.request.Request(f"{gateway}/v1/completions",
                                         data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        start, first = time.perf_counter(), None
        with urllib.request.urlopen(request, timeout=600) as response:
            for line in response:
                if line.startswith(b"data: {") and first is None:
                    first = time.perf_counter() - start
        return first, time.perf_counter() - start
    return call


def timed(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def throughput(call, clients, requests):
    """Requests/s of `clients` threads each making `requests` calls."""
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda _: [call() for _ in range(requests)], range(clients)))
    return clients * requests / (time.perf_counter() - start)


def measure(model, new_tokens, chunk_tokens, clients, requests, rounds):
    """{"model", settings, "server", "latency_ms": {direct, gateway},
    "requests_per_second": {direct, gateway}, "stream": {final, chunked: {first_ms,
    total_ms}}}; see the module's docstring."""
    with tempfile.TemporaryDirectory() as root:
        export_gpt(root, model, new_tokens)
        served = DevServer(root).__enter__()
        processes = []
        try:
            final, final_url = start_gateway(served.rest_url, 0)
            processes.append(final)
            chunked, chunked_url = start_gateway(served.rest_url, chunk_tokens)
            processes.append(chunked)
            calls = {"direct": direct_call(served.rest_url, new_tokens),
                     "gateway": gateway_call(final_url, new_tokens)}
            streams = {"final": stream_call(final_url, new_tokens),
                       "chunked": stream_call(chunked_url, new_tokens)}
            for call in [*calls.values(), *streams.values()]:
                call()  # untimed: the first request traces nothing, but warms caches
            latency = {side: [] for side in calls}
            stream = {side: [] for side in streams}
            for _ in range(rounds):
                for side, call in calls.items():
                    latency[side].append(1000 * timed(call))
                for side, call in streams.items():
                    stream[side].append(call())
            rates = {side: throughput(call, clients, requests) for side, call in calls.items()}
        finally:
            for process in processes:
                process.terminate()
                process.wait(30)
            served.__exit__(None, None, None)
    return {"model": model, "new_tokens": new_tokens, "chunk_tokens": chunk_tokens,
            "clients": clients, "requests": requests, "rounds": rounds,
            "server": "kerasllm.serving.dev_server",
            "latency_ms": {side: statistics.median(v) for side, v in latency.items()},
            "requests_per_second": rates,
            "stream": {side: {"first_ms": 1000 * statistics.median(f for f, _ in v),
                              "total_ms": 1000 * statistics.median(t for _, t in v)}
                       for side, v in stream.items()}}


def description(record):
    return (f"{record['model']} (random weights), greedy, {record['new_tokens']} new tokens "
            f"from a {len(PROMPT.split())}-word prompt, served by {record['server']} in the "
            f"bench's process, the gateway in its own; latency: median of "
            f"{record['rounds']} alternating requests; throughput: {record['clients']} "
            f"concurrent clients x {record['requests']} requests; chunked streaming: "
            f"{record['chunk_tokens']} tokens per chunk")


def table(record):
    """Lines of a markdown table: each figure direct (or one final chunk) and through
    the gateway (or chunked), and their ratio."""
    latency, rates, stream = (record["latency_ms"], record["requests_per_second"],
                              record["stream"])
    return markdown_table(
        ["<figure", "direct / one chunk", "gateway / chunked", "ratio"],
        [["latency, batch 1 (ms)", speed(latency["direct"], 1), speed(latency["gateway"], 1),
          ratio(latency["gateway"], latency["direct"])],
         [f"throughput, {record['clients']} clients (requests/s)",
          speed(rates["direct"], 1), speed(rates["gateway"], 1),
          ratio(rates["gateway"], rates["direct"])],
         ["stream: first chunk (ms)", speed(stream["final"]["first_ms"], 1),
          speed(stream["chunked"]["first_ms"], 1),
          ratio(stream["chunked"]["first_ms"], stream["final"]["first_ms"])],
         ["stream: whole answer (ms)", speed(stream["final"]["total_ms"], 1),
          speed(stream["chunked"]["total_ms"], 1),
          ratio(stream["chunked"]["total_ms"], stream["final"]["total_ms"])]])


def main(argv):
    del argv
    if FLAGS.quick:
        timing.set_unless_given(QUICK)
    record = measure(FLAGS.model, FLAGS.new_tokens, FLAGS.chunk_tokens, FLAGS.clients,
                     FLAGS.requests, FLAGS.rounds)
    print_record(record, description, table, FLAGS.json)


if __name__ == "__main__":
    define_flags()
    app.run(main)
