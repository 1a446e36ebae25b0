"""lm-eval (EleutherAI's lm-evaluation-harness, the `lm_eval` extra) against the
OpenAI-compatible gateway's /v1/completions, on the task files of
kerasllm.evaluation.lm_eval_tasks:

    python -m kerasllm.serving.gateway --serving=http://localhost:8501 --port=8000
    python -m kerasllm.evaluation.lm_eval --gateway=http://localhost:8000/v1 \\
        --model=smollm2 --tasks=kerasllm_rt,kerasllm_shakespeare --limit=200

The model type is `kerasllm-completions`, lm-eval's `local-completions` with three
settings of its own, because local-completions cannot score a kerasllm export exactly
as it is:
  * Its loglikelihood needs a tokenizer to count the context's tokens (with
    tokenizer_backend=None it refuses), and a Hugging Face one would be a download
    that need not split text as the export does. Here the tokenizer is the gateway's:
    a text's tokens are those /v1/completions echoes for it (max_tokens 0, echo,
    logprobs; a text longer than the export's `score` reads is split at a line break
    and its halves tokenized apart), given ids in the order first seen; ids decode
    by joining the tokens' texts. Requests go as text (tokenized_requests=False).
  * A continuation's log-likelihood is read by characters, not by lm-eval's token
    count: the echoed tokens from the end of the context's text on (the export
    re-tokenizes what it scores, and a rolling window's text, cut out of a long
    document, can split one token otherwise at its start). A context that does not
    end on one of the export's token boundaries is an error, not a shifted sum. The
    export puts <s> before every text and scores the first token from it; lm-eval's
    prefix token (before a document in loglikelihood_rolling, or for an empty
    context) is an id that decodes to "".
  * Scoring asks for max_tokens 0 (local-completions asks for 1 and drops the last
    log-prob, which loses a continuation token when the model's next token is </s>:
    the export leaves a stop token out of its output).
Greedy flags (lm-eval's is_greedy) come from the echo's top_logprobs, which list a
prompt token's own log-prob alone: they always say greedy.

--max_length must not exceed the export's max_prompt_length + max_new_tokens (what
its `score` reads; a longer text is cut to its last tokens there). A document longer
than it is scored in lm-eval's rolling windows, each window's tokens predicted with
the window before as context.
"""
import json
import os
import sys
import tempfile
import threading
import urllib.error
import urllib.request

from kerasllm.errors import KerasLLMError

MODEL_TYPE = "kerasllm-completions"
PREFIX_ID = 0  # lm-eval's prefix token (<s>): decodes to "", the export adds its own <s>


class LmEvalError(KerasLLMError, RuntimeError):
    """The gateway's answers cannot be scored as lm-eval asks."""


class GatewayTokenizer:
    """The tokenizer lm-eval counts tokens with (its "remote" tokenizer interface): the
    tokens the gateway echoes for a text, numbered in the order first seen."""

    def __init__(self, completions_url, model, headers=None, timeout=300):
        self.url, self.model, self.timeout = completions_url, model, timeout
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.ids, self.texts = {}, {PREFIX_ID: ""}
        self.cache = {}
        self.lock = threading.Lock()

    eos_token = bos_token = pad_token = None
    eos_token_id = None
    bos_token_id = PREFIX_ID

    def tokens(self, text):
        """The token texts of `text` as the export splits it (after its <s>); a text
        longer than the export's `score` reads is split at a line break (else a space)
        near its middle and its halves tokenized apart."""
        if text not in self.cache:
            tokens = self._echoed(text)
            if "".join(tokens) != text:
                if not text.endswith("".join(tokens)) or len(text) < 2:
                    raise LmEvalError(
                        f"the gateway's tokens of {text[:60]!r} do not join into the text "
                        f"({tokens[:10]}...): lm-eval cannot count tokens with them")
                middle = len(text) // 2
                cut = max(text.rfind("\n", 0, middle), text.rfind(" ", 0, middle)) + 1
                cut = cut if cut > 0 else middle
                tokens = self.tokens(text[:cut]) + self.tokens(text[cut:])
            self.cache[text] = tokens
        return self.cache[text]

    def _echoed(self, text):
        body = json.dumps({"model": self.model, "prompt": text, "max_tokens": 0,
                           "echo": True, "logprobs": 0}).encode("utf-8")
        request = urllib.request.Request(self.url, body, self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())["choices"][0]["logprobs"]["tokens"]
        except urllib.error.HTTPError as error:
            raise LmEvalError(f"the gateway at {self.url} answered {error.code} to a "
                              f"{len(text)}-character text: "
                              f"{error.read().decode('utf-8', 'replace')[:300]}") from None
        except urllib.error.URLError as error:
            raise LmEvalError(f"cannot reach the gateway at {self.url}: "
                              f"{error.reason}") from None

    def encode(self, text):
        tokens = self.tokens(text)
        with self.lock:
            for token in tokens:
                if token not in self.ids:
                    self.ids[token] = len(self.texts)
                    self.texts[self.ids[token]] = token
            return [self.ids[token] for token in tokens]

    def __call__(self, text, **kwargs):
        return {"input_ids": self.encode(text)}

    def decode(self, ids):
        return "".join(self.texts[i] for i in ids)

    def batch_decode(self, ids_list):
        return [self.decode(ids) for ids in ids_list]


def parse_logprobs(outputs, tokens, ctxlens, decode):
    """[(log-likelihood of the continuation, is_greedy)] of each request: the sum of the
    echoed log-probs of the tokens after the context's characters (`decode` gives the
    text of token ids; the context must end on one of the gateway's token boundaries)."""
    results = []
    for out in outputs if isinstance(outputs, list) else [outputs]:
        choices = sorted(out["choices"], key=lambda c: c["index"])
        for choice, ids, ctxlen in zip(choices, tokens, ctxlens):
            logprobs = choice["logprobs"]
            offsets = logprobs["text_offset"]
            context = len(decode(ids[:ctxlen]))
            if context not in offsets and context != len(choice["text"]):
                raise LmEvalError(
                    f"the gateway's tokens of a text lm-eval scores do not start at the "
                    f"end of its context (character {context}): the export split it "
                    "otherwise")
            start = offsets.index(context) if context in offsets else len(offsets)
            continuation = logprobs["token_logprobs"][start:]
            if any(v is None for v in continuation):
                raise LmEvalError("the export does not score a text's first token (its "
                                  "tokenizer has no <s>), which lm-eval asks for")
            greedy = all(t is None or v >= max(t.values()) - 1e-6
                         for v, t in zip(continuation, logprobs["top_logprobs"][start:]))
            results.append((float(sum(continuation)), greedy))
    return results


def model_class():
    """The lm-eval model class (registered as `kerasllm-completions`), lm_eval imported
    only when asked for."""
    from lm_eval.api.registry import MODEL_REGISTRY, register_model
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    if MODEL_TYPE in MODEL_REGISTRY:
        return MODEL_REGISTRY[MODEL_TYPE]

    @register_model(MODEL_TYPE)
    class GatewayCompletions(LocalCompletionsAPI):
        """local-completions with the gateway's own tokenizer (see the module)."""

        def __init__(self, base_url=None, model=None, **kwargs):
            kwargs.update(tokenizer_backend=None, tokenized_requests=False)
            super().__init__(base_url=base_url, model=model, **kwargs)
            self.tokenizer = GatewayTokenizer(base_url, self.model, self.header,
                                              self.timeout)
            self.tokenizer_backend = "remote"  # lm-eval calls it as its remote tokenizer
            self.custom_prefix_token_id = PREFIX_ID

        def _create_payload(self, messages, generate=False, gen_kwargs=None, seed=1234,
                            eos=None, **kwargs):
            if generate:
                return super()._create_payload(messages, generate=True,
                                               gen_kwargs=gen_kwargs, seed=seed, eos=eos)
            return {"model": self.model, "prompt": messages, "max_tokens": 0,
                    "echo": True, "logprobs": 1, "temperature": 0, "seed": seed}

        def parse_logprobs(self, outputs, tokens=None, ctxlens=None, **kwargs):
            return parse_logprobs(outputs, tokens, ctxlens, self.tokenizer.decode)

    return GatewayCompletions


def evaluate(gateway, model, tasks, tasks_dir, *, limit=None, max_length=2048,
             batch_size=1, api_key=None, log_samples=False):
    """lm_eval.simple_evaluate's results of `tasks` (found in `tasks_dir`, an
    include_path) run against the gateway at `gateway` (its /v1 URL)."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    lm = model_class()(base_url=gateway.rstrip("/") + "/completions", model=model,
                       max_length=max_length, batch_size=batch_size,
                       **({"header": {"Authorization": f"Bearer {api_key}"}}
                          if api_key else {}))
    return lm_eval.simple_evaluate(
        model=lm, tasks=list(tasks), limit=limit, log_samples=log_samples,
        task_manager=TaskManager(include_path=tasks_dir, include_defaults=False))


def define_flags(fv):
    from absl import flags
    from kerasllm.evaluation.lm_eval_tasks import TASKS
    flags.DEFINE_string("gateway", "http://localhost:8000/v1",
                        "The gateway's OpenAI base URL.", flag_values=fv)
    flags.DEFINE_string("model", None, "The served model's name (name:version, "
                        "name@label).", flag_values=fv)
    flags.DEFINE_list("tasks", list(TASKS), "Tasks of --tasks_dir.", flag_values=fv)
    flags.DEFINE_integer("limit", None, "At most this many documents per task.",
                         flag_values=fv)
    flags.DEFINE_string("tasks_dir", None, "Where the task files are (written there "
                        "from the packaged datasets when it has none). Default: a "
                        "temporary directory.", flag_values=fv)
    flags.DEFINE_integer("max_length", 2048, "Tokens per scored window: at most the "
                         "export's max_prompt_length + max_new_tokens.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 1, "Texts per request.", flag_values=fv)
    flags.DEFINE_string("output", None, "Write the results JSON here.", flag_values=fv)


def run(fv):
    from lm_eval.utils import make_table
    from kerasllm.evaluation import lm_eval_tasks

    tasks_dir = fv.tasks_dir or tempfile.mkdtemp(prefix="kerasllm_lm_eval_")
    if not all(os.path.exists(os.path.join(tasks_dir, f"{t}.yaml"))
               for t in lm_eval_tasks.TASKS):
        lm_eval_tasks.write_tasks(tasks_dir, *lm_eval_tasks.default_task_data())
    results = evaluate(fv.gateway, fv.model, fv.tasks, tasks_dir, limit=fv.limit,
                       max_length=fv.max_length, batch_size=fv.batch_size,
                       api_key=os.environ.get("OPENAI_API_KEY"))
    print(make_table(results))
    if fv.output:
        with open(fv.output, "w") as f:
            json.dump(results["results"], f, indent=2, default=str)


def main():
    from absl import flags

    from kerasllm.command_line import run_command

    define_flags(flags.FLAGS)
    flags.mark_flag_as_required("model")

    run_command("lm_eval", run, missing_extra="lm_eval")


if __name__ == "__main__":
    sys.exit(main())
