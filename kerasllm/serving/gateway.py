"""An OpenAI-compatible HTTP gateway in front of TF Serving running kerasllm exports.

    python -m kerasllm.serving.gateway --serving=http://localhost:8501 --port=8000 \\
        --models=smollm2,minilm
    python -m kerasllm.serving.gateway --serving=grpc://localhost:8500 --port=8000

Any OpenAI client then talks to the exports:

    client = openai.OpenAI(base_url="http://localhost:8000/v1", api_key="unused")
    client.chat.completions.create(model="smollm2", messages=[...], max_tokens=20)

OpenAI's `model` is TF Serving's model name (the directory under the export root),
optionally `name:version` or `name@label` (kerasllm.serving.model_config). Every call
to TF Serving goes through kerasllm.serving.client (its REST or gRPC transport, its
retries); the gateway itself holds no model.

Endpoints and what they run (an export's family comes from its signatures, read
from TF Serving's metadata API, or by trying them on a server without it):

  GET  /v1/models             the models of --models (TF Serving has no list API;
                              without --models, those the server lists at GET
                              /v1/models if it does, else the ones served so far).
  POST /v1/chat/completions   GPT: messages rendered with the export's chat template
                              (`describe("chat_template")`; the documented plain
                              default of kerasllm.data.chat_template when it has none
                              or is older), then `generate_with_options`
                              (`generate_with_logprobs` with logprobs).
  POST /v1/completions        GPT: the same without the template; `echo` and
                              `logprobs` (an int: the top alternatives) read the
                              prompt's log-probabilities from `score`; max_tokens 0
                              scores without generating. seq2seq (extension): the
                              prompt is the source, `translate_with_options`
                              translates it (`beam_size`, `length_penalty` extra
                              fields; max_tokens is its max_length; temperature, top_p
                              and seed do not apply to beam search; n <= the beams).
  POST /v1/embeddings         BERT encoders: `sentence_embedding` (float or base64).
  GET  /metrics               Prometheus: requests by endpoint and status, tokens,
                              latency, time to first token, completion tokens/s.
  GET  /health                200 "ok" (no key needed).

Settings: max_tokens (<= the export's max_new_tokens), temperature (0..2; 0 is
greedy), top_p (0, 1], `top_k` (extension, 0 = off), seed (row i of n uses seed + i;
no seed: a random one), n (1..8, all n rows in one predict request), stop (a string
or up to 4: the export takes one stop string per row, so the first is sent to it
and every one of them, the first too, is also cut by the gateway from the text, so
a stop string the export's token matching misses is still honoured; token counts
and log-probs are cut with the text), logprobs / top_logprobs (0..20), stream.
`guided_choice` (a list of strings, in extra_body): each option appended to the
prompt is scored with `score` and the most likely is the answer. usage: prompt
tokens from the export's `prompt_num_tokens` (0 from exports older than it),
completion tokens from `num_tokens`. finish_reason: "length" -> "length",
"stop_token" / "stop" -> "stop".

What needs outputs newer exports have (token_log_probs, generate_with_logprobs,
score's tokens, describe) fails with a 400 saying to re-export when the export
lacks them. Errors are OpenAI's JSON {"error": {"message", "type", "param",
"code"}}: an unknown model 404, bad settings 400, a missing or unknown key 401
(with --api_key_file), a body over --max_request_bytes 413, a request running
past --timeout_seconds 504, TF Serving unreachable 503.

Streaming (server-sent events, as OpenAI sends them). Open-source TF Serving has
unary RPCs only: no token streaming, no continuous batching (its batcher batches
whole requests), no prefix caching. So a stream is either
  --stream_chunk_tokens=0  one final chunk: the whole generation, then [DONE];
                           time to first token = the whole request's time; or
  --stream_chunk_tokens=k  chunked decoding: the gateway asks for k tokens at a time
                           and re-sends prompt + text so far for the next k. Each
                           chunk re-runs the prefill of everything before it (about
                           T/k prefills of a growing text instead of one, and a new
                           predict request each), and the text so far is
                           re-tokenized, which may split it differently from how it
                           was generated, so the continuation can differ from an
                           unchunked one; sampled rows draw each chunk with its own
                           seed (the row's seed, then seed + 7919 * chunk). The
                           gateway holds back the end of the text that could begin
                           a stop string. bench/gateway_overhead.py measures it.
One JSON log line per request goes to the logger `kerasllm.serving.gateway`
(stderr when run as a program): endpoint, model, status, prompt and completion
tokens, latency.
"""
import asyncio
import base64
import dataclasses
import json
import logging
import random
import sys
import time
import uuid

import numpy as np

import kerasllm
from kerasllm.data.chat_template import DEFAULT_PLAIN, ChatTemplate, ChatTemplateError
from kerasllm.errors import KerasLLMError
from kerasllm.serving.client import GrpcTransport, RestTransport, ServingClient, ServingError

LOG = logging.getLogger("kerasllm.serving.gateway")
MAX_N, MAX_TOP_LOGPROBS, MAX_STOPS = 8, 20, 4
FINISH_REASONS = {"length": "length", "stop_token": "stop", "stop": "stop"}
REEXPORT = (f"re-export it with kerasllm >= {kerasllm.__version__}, whose exports "
            "have them")
# How long what the gateway learned about a model (signatures, template, limits)
# is kept before it asks again (a new version may have been loaded).
MODEL_INFO_SECONDS = 60.0
GPT, SEQ2SEQ, BERT = "gpt", "seq2seq", "bert"


class GatewayError(KerasLLMError, ValueError):
    """The gateway's settings (flags) cannot be used."""


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    TYPES = {400: "invalid_request_error", 401: "invalid_request_error",
             404: "invalid_request_error", 413: "invalid_request_error",
             503: "server_error", 504: "timeout", 502: "server_error", 500: "server_error"}

    def __init__(self, status, message, param=None, code=None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self):
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status,
                                                                          "server_error"),
                          "param": self.param, "code": self.code}}


def _missing(what, model):
    return ApiError(400, f"model {model!r}: this export has no {what}; {REEXPORT}",
                    code="unsupported_by_export")


# --- models: addresses, families, what an export offers ---------------------------

def parse_model(model):
    """(name, version or None, label or None) of "name", "name:3" or "name@stable"."""
    if not isinstance(model, str) or not model:
        raise ApiError(400, "`model` must be a model name (optionally name:version or "
                            "name@label)", param="model")
    name, version, label = model, None, None
    if "@" in model:
        name, _, label = model.partition("@")
    elif ":" in model:
        name, _, version = model.partition(":")
        if not version.isdigit():
            raise ApiError(400, f"model {model!r}: the version after ':' must be a number",
                           param="model")
        version = int(version)
    if not name or "/" in name or (label is not None and not label):
        raise ApiError(400, f"model {model!r} is not name, name:version or name@label",
                       param="model")
    return name, version, label


@dataclasses.dataclass
class ModelInfo:
    """What the gateway knows of one served model (at one version or label).

    signatures: {name: set of output names}, or None where the server has no
      metadata API (then a signature is known only once tried).
    """
    model: str
    family: str
    signatures: dict = None
    chat_template: ChatTemplate = None
    max_new_tokens: int = None
    max_prompt_length: int = None
    fetched: float = 0.0

    def lacks(self, signature, outputs=()):
        """True if the signature or one of `outputs` is known to be absent."""
        if self.signatures is None or signature not in self.signatures:
            return self.signatures is not None
        return not set(outputs) <= self.signatures[signature]

    def learn(self, signature, outputs):
        if self.signatures is not None:
            self.signatures.setdefault(signature, set()).update(outputs)


def _family(signatures):
    if "generate_with_options" in signatures:
        return GPT
    if "translate_with_options" in signatures:
        return SEQ2SEQ
    if "sentence_embedding" in signatures.get("serving_default", ()):
        return BERT
    return None


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class Serving:
    """TF Serving behind the gateway: one transport (REST or gRPC) shared by a
    ServingClient per addressed model, and what each model offers."""

    def __init__(self, address, *, timeout=120.0, retries=2, backoff=0.2):
        if address.startswith("grpc://"):
            self.transport = GrpcTransport(address[len("grpc://"):].rstrip("/"))
        elif address.startswith(("http://", "https://")):
            self.transport = RestTransport(address)
        else:
            raise GatewayError(f"--serving={address!r}: give TF Serving's REST address "
                               "(http://HOST:8501) or its gRPC one (grpc://HOST:8500)")
        self.address = address
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.clients, self.infos = {}, {}
        self.served = set()  # model names that answered, for /v1/models without --models

    def client(self, address):
        if address not in self.clients:
            name, version, label = address
            self.clients[address] = ServingClient(
                name, transport=self.transport, version=version, label=label,
                timeout=self.timeout, retries=self.retries, backoff=self.backoff)
        return self.clients[address]

    def predict(self, address, info, signature, inputs, outputs=(), what=None):
        """The outputs of `signature`; ApiError 400 if the export lacks it or one of
        `outputs` (then `what` names the feature), 404 for an unknown model, 503
        when TF Serving cannot be reached."""
        if info is not None and info.lacks(signature, outputs):
            raise _missing(what or f"signature {signature!r}", info.model)
        try:
            result = self.client(address).predict(inputs, signature)
        except ServingError as error:
            if (error.kind in ("invalid", "not_found") and info is not None
                    and info.signatures is None and "not found in signature def" in str(error)):
                raise _missing(what or f"signature {signature!r}", info.model) from None
            raise _api_error(error, address) from None
        if info is not None:
            info.learn(signature, result)
            if not set(outputs) <= set(result):
                raise _missing(what or f"outputs {sorted(outputs)}", info.model)
        self.served.add(address[0])
        return result

    def info(self, address):
        """ModelInfo of a model (cached for MODEL_INFO_SECONDS)."""
        info = self.infos.get(address)
        if info is not None and time.monotonic() - info.fetched < MODEL_INFO_SECONDS:
            return info
        model = _model_name(address)
        try:
            signatures = {name: set(spec["outputs"])
                          for name, spec in self.client(address).signatures().items()}
        except ServingError as error:
            if error.kind == "not_found":
                raise _api_error(error, address) from None
            if error.kind == "unavailable":
                raise _api_error(error, address) from None
            signatures = None  # no metadata API: find the family by trying
        family = _family(signatures) if signatures is not None else self._probe(address)
        if family is None:
            raise ApiError(400, f"model {model!r} is not a kerasllm GPT, seq2seq or BERT "
                                "encoder export (it has none of generate_with_options, "
                                "translate_with_options, a sentence_embedding output)",
                           param="model", code="unsupported_model")
        info = ModelInfo(model, family, signatures)
        if family == GPT:
            self._describe(address, info)
        info.fetched = time.monotonic()
        self.infos[address] = info
        self.served.add(address[0])
        return info

    def _probe(self, address):
        """The family of a model on a server without the metadata API: its signatures
        tried with the smallest requests."""
        probes = [(GPT, "generate_with_options", {
            "prompt": ["a"], "max_new_tokens": np.ones(1, np.int32),
            "temperature": np.zeros(1, np.float32), "top_k": np.zeros(1, np.int32),
            "top_p": np.ones(1, np.float32), "seed": np.zeros(1, np.int32), "stop": [""]}),
            (SEQ2SEQ, "translate_with_options", {
                "text": [""], "beam_size": np.ones(1, np.int32),
                "length_penalty": np.zeros(1, np.float32),
                "max_length": np.ones(1, np.int32)}),
            (BERT, "serving_default", {"text": [""]})]
        for family, signature, inputs in probes:
            try:
                outputs = self.client(address).predict(inputs, signature)
            except ServingError as error:
                # An unknown signature is INVALID_ARGUMENT / FAILED_PRECONDITION (400);
                # NOT_FOUND is the model.
                if error.kind in ("not_found", "unavailable"):
                    raise _api_error(error, address) from None
                continue
            if family != BERT or "sentence_embedding" in outputs:
                return family
        return None

    def _describe(self, address, info):
        """The chat template and limits from the export's `describe` (when it has one)."""
        fields = ["chat_template", "bos_token", "eos_token", "max_prompt_length",
                  "max_new_tokens"]
        template, special_tokens = None, {}
        if not info.lacks("describe", ["value"]):
            try:
                values = [_text(v) for v in
                          self.client(address).predict({"field": fields}, "describe")["value"]]
                info.learn("describe", ["value"])
                described = dict(zip(fields, values))
                template = described["chat_template"] or None
                special_tokens = {name: described[name] or None
                                  for name in ("bos_token", "eos_token")}
                for field in ("max_prompt_length", "max_new_tokens"):
                    if described[field].strip().isdigit():
                        setattr(info, field, int(described[field]))
            except ServingError as error:
                if error.kind not in ("invalid", "not_found"):
                    raise _api_error(error, address) from None
        try:
            info.chat_template = ChatTemplate(template or DEFAULT_PLAIN, **special_tokens)
        except ChatTemplateError:
            info.chat_template = None  # answered at chat time, with the reason

    def list_models(self):
        """Model names the server offers, if it lists them (kerasllm's development
        server may; TF Serving does not); else None."""
        if not isinstance(self.transport, RestTransport):
            return None
        import urllib.request
        try:
            with urllib.request.urlopen(f"{self.transport.url}/v1/models",
                                        timeout=5) as response:
                answer = json.loads(response.read())
        except Exception:  # noqa: BLE001 (no list API: the usual case)
            return None
        models = answer.get("models") if isinstance(answer, dict) else answer
        names = [m.get("name") if isinstance(m, dict) else m for m in models or []]
        return [n for n in names if isinstance(n, str)] or None


def _model_name(address):
    name, version, label = address
    return name + (f":{version}" if version is not None else
                   f"@{label}" if label is not None else "")


def _api_error(error, address):
    model = _model_name(address)
    if error.kind == "not_found":
        return ApiError(404, f"The model `{model}` does not exist or is not served "
                             f"({error})", param="model", code="model_not_found")
    if error.kind == "invalid":
        return ApiError(400, f"TF Serving refused the request: {error}")
    if error.kind == "unavailable":
        return ApiError(503, f"TF Serving is unavailable: {error}")
    return ApiError(502, f"TF Serving failed: {error}")


# --- request settings -----------------------------------------------------------

def _number(body, name, default, low, high, *, low_open=False, integer=False):
    value = body.get(name)
    if value is None:
        return default
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ApiError(400, f"`{name}` must be {'an integer' if integer else 'a number'}, "
                            f"got {value!r}", param=name)
    if (value <= low if low_open else value < low) or (high is not None and value > high):
        bound = f"({low}" if low_open else f"[{low}"
        raise ApiError(400, f"`{name}` must be in {bound}, {high if high is not None else 'inf'}]"
                            f", got {value}", param=name)
    return value


def _texts(body, name):
    """body[name], a string or a non-empty list of them, as a list."""
    value = body.get(name)
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(400, f"`{name}` must be a string or a non-empty list of strings "
                            "(token ids are not supported)", param=name)
    return texts


def _stops(body):
    stop = body.get("stop")
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise ApiError(400, "`stop` must be a string or a list of strings", param="stop")
    if len(stops) > MAX_STOPS:
        raise ApiError(400, f"`stop` takes at most {MAX_STOPS} strings", param="stop")
    return [s for s in stops if s]


@dataclasses.dataclass
class Settings:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int = 0
    n: int = 1
    stops: list = dataclasses.field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0


def _settings(body, info, *, chat):
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            raise ApiError(400, f"`{name}` is not supported by kerasllm exports", param=name)
    if body.get("logit_bias"):
        raise ApiError(400, "`logit_bias` is not supported by kerasllm exports",
                       param="logit_bias")
    limit = info.max_new_tokens
    name = "max_completion_tokens" if chat and body.get("max_completion_tokens") is not None \
        else "max_tokens"
    max_tokens = _number(body, name, limit or 16, 1 if chat else 0, limit, integer=True)
    if chat:
        if body.get("logprobs") not in (None, True, False):
            raise ApiError(400, "`logprobs` must be true or false", param="logprobs")
        logprobs = bool(body.get("logprobs"))
        top = _number(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS, integer=True)
        if body.get("top_logprobs") is not None and not logprobs:
            raise ApiError(400, "`top_logprobs` needs `logprobs`: true", param="top_logprobs")
    else:
        top = _number(body, "logprobs", None, 0, MAX_TOP_LOGPROBS, integer=True)
        logprobs, top = top is not None, top or 0
    seed = _number(body, "seed", None, -2**63, 2**63 - 1, integer=True)
    return Settings(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 0.0, 1.0, low_open=True),
        top_k=_number(body, "top_k", 0, 0, None, integer=True),
        seed=random.randrange(2**31 - MAX_N) if seed is None else seed,
        n=_number(body, "n", 1, 1, MAX_N, integer=True),
        stops=_stops(body), logprobs=logprobs, top_logprobs=top)


def _int32(seed):
    """A seed as the export's int32 input (wrapped)."""
    return (int(seed) + 2**31) % 2**32 - 2**31


# --- generation -----------------------------------------------------------------

@dataclasses.dataclass
class Generated:
    """One row's continuation (tokens / logprobs / top: per token, when asked for)."""
    text: str
    num_tokens: int
    finish_reason: str
    prompt_tokens: int = 0
    tokens: list = None
    logprobs: list = None
    top: list = None

    def cut(self, at):
        """The row ending before character `at` of its text: what a stop string does."""
        if self.tokens is not None:
            keep, offset = 0, 0
            for token in self.tokens:
                if offset >= at:
                    break
                offset, keep = offset + len(token), keep + 1
            self.tokens, self.logprobs = self.tokens[:keep], self.logprobs[:keep]
            self.top = self.top[:keep]
            self.num_tokens = keep
        self.text, self.finish_reason = self.text[:at], "stop"


def _first_stop(text, stops, start=0):
    """The index in `text` of the earliest stop string found at or after `start`
    (None if none)."""
    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(found) if found else None


def _rows(outputs, name, rows, default):
    return outputs[name] if name in outputs else [default] * rows


def generate(serving, address, info, prompts, seeds, s, max_new_tokens):
    """Generated for each prompt (row i with seeds[i]) in one predict request."""
    rows = len(prompts)
    inputs = {"prompt": list(prompts),
              "max_new_tokens": np.asarray(max_new_tokens, np.int32),
              "temperature": np.full(rows, s.temperature, np.float32),
              "top_k": np.full(rows, s.top_k, np.int32),
              "top_p": np.full(rows, s.top_p, np.float32),
              "seed": np.asarray([_int32(seed) for seed in seeds], np.int32),
              "stop": [s.stops[0] if s.stops else ""] * rows}
    if s.logprobs:
        inputs["top_logprobs"] = np.full(rows, s.top_logprobs, np.int32)
        out = serving.predict(address, info, "generate_with_logprobs", inputs,
                              ["tokens", "token_log_probs", "top_tokens", "top_log_probs"],
                              "log-probabilities (signature generate_with_logprobs)")
    else:
        out = serving.predict(address, info, "generate_with_options", inputs)
    results = []
    prompt_tokens = _rows(out, "prompt_num_tokens", rows, 0)
    for i in range(rows):
        count = int(out["num_tokens"][i])
        g = Generated(_text(out["text"][i]), count,
                      FINISH_REASONS.get(_text(out["finish_reason"][i]), "stop"),
                      int(prompt_tokens[i]))
        if s.logprobs:
            g.tokens = [_text(t) for t in out["tokens"][i][:count]]
            g.logprobs = [float(v) for v in out["token_log_probs"][i][:count]]
            g.top = [[(_text(t), float(v)) for t, v in
                      zip(out["top_tokens"][i][j][:s.top_logprobs],
                          out["top_log_probs"][i][j][:s.top_logprobs])]
                     for j in range(count)]
        results.append(g)
    return results


def score(serving, address, info, texts, top_logprobs=0):
    """[(tokens, log-probs, alternatives)] of each text, from `score`: None where a
    token is unscored, else each token's log-prob and its `top_logprobs` most likely
    alternatives [(token, log-prob)]."""
    out = serving.predict(address, info, "score", {"text": list(texts)},
                          ["tokens", "token_log_probs", "text_lengths", "top_tokens",
                           "top_log_probs"],
                          "per-token log-probabilities of a text (score's tokens)")
    results = []
    for i in range(len(texts)):
        length, scored = int(out["text_lengths"][i]), int(out["num_tokens"][i])
        tokens = [_text(t) for t in out["tokens"][i][:length]]
        unscored = range(length - scored)
        logprobs = [None if j in unscored else float(v)
                    for j, v in enumerate(out["token_log_probs"][i][:length])]
        top = [None if j in unscored else
               [(_text(t), float(v)) for t, v in zip(out["top_tokens"][i][j][:top_logprobs],
                                                     out["top_log_probs"][i][j][:top_logprobs])]
               for j in range(length)]
        results.append((tokens, logprobs, top))
    return results


def choose(serving, address, info, prompt, options):
    """(best option, prompt tokens, option tokens): `guided_choice` by `score`."""
    if (not isinstance(options, list) or not options
            or not all(isinstance(o, str) for o in options)):
        raise ApiError(400, "`guided_choice` must be a non-empty list of strings",
                       param="guided_choice")
    out = serving.predict(address, info, "score", {"text": [prompt] + [prompt + o
                                                                       for o in options]})
    best = int(np.argmax(out["log_probability"][1:]))
    prompt_tokens = int(out["num_tokens"][0])
    return options[best], prompt_tokens, max(0, int(out["num_tokens"][best + 1]) - prompt_tokens)


# --- response pieces --------------------------------------------------------------

def _chat_logprobs(g):
    if g.tokens is None:
        return None

    def entry(token, logprob):
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {"content": [{**entry(t, lp), "top_logprobs": [entry(a, b) for a, b in top]}
                        for t, lp, top in zip(g.tokens, g.logprobs, g.top)]}


def _completion_logprobs(tokens, logprobs, top, start):
    offsets, offset = [], start
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {"tokens": tokens, "token_logprobs": logprobs,
            "top_logprobs": [None if t is None else dict(t) for t in top],
            "text_offset": offsets}


def _usage(prompt_tokens, completion_tokens):
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


# --- the app ----------------------------------------------------------------------

class Record:
    """One request's log line and metrics."""

    def __init__(self, gateway, endpoint):
        self.gateway, self.endpoint = gateway, endpoint
        self.start, self.first_token = time.monotonic(), None
        self.model, self.prompt_tokens, self.completion_tokens = None, 0, 0
        self.stream, self.done = False, False

    def token_arrived(self):
        if self.first_token is None:
            self.first_token = time.monotonic()

    def finish(self, status, error=None):
        if self.done:
            return
        self.done = True
        self.gateway.observe(self, status, error)


class Gateway:
    """The gateway's state: TF Serving, its settings, its metrics."""

    def __init__(self, serving, *, models=None, api_keys=None, max_request_bytes=1 << 20,
                 timeout_seconds=120.0, stream_chunk_tokens=0):
        from prometheus_client import CollectorRegistry, Counter, Histogram
        self.serving = serving if isinstance(serving, Serving) else Serving(
            serving, timeout=timeout_seconds)
        self.models, self.api_keys = models, set(api_keys) if api_keys else None
        self.max_request_bytes, self.timeout_seconds = max_request_bytes, timeout_seconds
        if stream_chunk_tokens < 0:
            raise GatewayError(f"--stream_chunk_tokens must be 0 or more, got "
                               f"{stream_chunk_tokens}")
        self.stream_chunk_tokens = stream_chunk_tokens
        self.registry = CollectorRegistry()
        prefix = "kerasllm_gateway_"
        self.requests = Counter(prefix + "requests", "Requests by endpoint and status.",
                                ["endpoint", "status"], registry=self.registry)
        self.tokens = Counter(prefix + "tokens", "Tokens by model and kind (prompt, "
                              "completion).", ["model", "kind"], registry=self.registry)
        self.latency = Histogram(prefix + "request_seconds", "Time to the last byte.",
                                 ["endpoint"], registry=self.registry)
        self.ttft = Histogram(prefix + "time_to_first_token_seconds",
                              "Time to the first generated text sent (a non-streamed "
                              "answer: the whole request).", ["endpoint"],
                              registry=self.registry)
        self.tokens_per_second = Histogram(
            prefix + "completion_tokens_per_second", "Completion tokens / request seconds.",
            ["endpoint"], buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
            registry=self.registry)

    def observe(self, record, status, error):
        seconds = time.monotonic() - record.start
        self.requests.labels(record.endpoint, str(status)).inc()
        self.latency.labels(record.endpoint).observe(seconds)
        if status == 200:
            if record.model:
                self.tokens.labels(record.model, "prompt").inc(record.prompt_tokens)
                self.tokens.labels(record.model, "completion").inc(record.completion_tokens)
            if record.endpoint != "embeddings":
                self.ttft.labels(record.endpoint).observe(
                    (record.first_token or time.monotonic()) - record.start)
                if record.completion_tokens:
                    self.tokens_per_second.labels(record.endpoint).observe(
                        record.completion_tokens / max(seconds, 1e-9))
        LOG.info(json.dumps({
            "endpoint": record.endpoint, "model": record.model, "status": status,
            "stream": record.stream, "prompt_tokens": record.prompt_tokens,
            "completion_tokens": record.completion_tokens,
            "latency_ms": round(1000 * seconds, 1),
            **({"error": error} if error else {})}))

    # Each endpoint: (body, record) -> a JSON-able dict, or an async iterator of SSE
    # events for a stream.

    async def run(self, function, *args):
        """`function(*args)` on a worker thread (the client's calls block)."""
        from starlette.concurrency import run_in_threadpool
        return await run_in_threadpool(function, *args)

    async def model_of(self, body, record):
        record.model = body.get("model") if isinstance(body.get("model"), str) else None
        address = parse_model(body.get("model"))
        return address, await self.run(self.serving.info, address)

    async def chat(self, body, record):
        address, info = await self.model_of(body, record)
        if info.family != GPT:
            raise ApiError(400, f"model {info.model!r} is a {info.family} export: "
                                + ("use /v1/embeddings" if info.family == BERT else
                                   "use /v1/completions, where the prompt is the source"),
                           param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "`messages` must be a non-empty list", param="messages")
        conversation = []
        for message in messages:
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise ApiError(400, "each message needs a `role` and `content`",
                               param="messages")
            content = message.get("content")
            if isinstance(content, list):
                if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                    raise ApiError(400, "only text content parts are supported",
                                   param="messages")
                content = "".join(p.get("text", "") for p in content)
            if not isinstance(content, str):
                raise ApiError(400, "a message's `content` must be text", param="messages")
            conversation.append({"role": message["role"], "content": content})
        if info.chat_template is None:
            raise ApiError(400, f"model {info.model!r}: its chat template is not valid Jinja")
        try:
            prompt = info.chat_template.render(conversation, add_generation_prompt=True)
        except ChatTemplateError as error:
            raise ApiError(400, str(error), param="messages") from None
        s = _settings(body, info, chat=True)
        return await self.complete(body, record, address, info, [prompt], s, chat=True,
                                   echo=False)

    async def completions(self, body, record):
        address, info = await self.model_of(body, record)
        prompts = _texts(body, "prompt")
        if info.family == BERT:
            raise ApiError(400, f"model {info.model!r} is an encoder: use /v1/embeddings",
                           param="model")
        if info.family == SEQ2SEQ:
            return await self.translate(body, record, address, info, prompts)
        s = _settings(body, info, chat=False)
        echo = body.get("echo", False)
        if not isinstance(echo, bool):
            raise ApiError(400, "`echo` must be true or false", param="echo")
        return await self.complete(body, record, address, info, prompts, s, chat=False,
                                   echo=echo)

    async def complete(self, body, record, address, info, prompts, s, *, chat, echo):
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise ApiError(400, "`stream` must be true or false", param="stream")
        record.stream = stream
        guided = body.get("guided_choice")
        if guided is not None:
            if stream or echo or len(prompts) != 1:
                raise ApiError(400, "`guided_choice` takes one prompt, without stream or "
                                    "echo", param="guided_choice")
            option, prompt_tokens, tokens = await self.run(choose, self.serving, address,
                                                           info, prompts[0], guided)
            rows = [Generated(option, tokens, "stop", prompt_tokens)] * s.n
            return self.answer(record, chat, body["model"], prompts, rows, s, echo=False,
                               echoed=None)
        if stream:
            if echo:
                raise ApiError(400, "`echo` with `stream` is not supported", param="echo")
            return self.stream(body, record, address, info, prompts, s, chat)
        echoed = None
        if echo and s.logprobs:
            echoed = await self.run(score, self.serving, address, info, prompts,
                                    s.top_logprobs)
        if s.max_tokens == 0:
            rows = [Generated("", 0, "length") for _ in prompts for _ in range(s.n)]
        else:
            rows = await self.run(generate, self.serving, address, info,
                                  [p for p in prompts for _ in range(s.n)],
                                  [s.seed + i for _ in prompts for i in range(s.n)], s,
                                  [s.max_tokens] * len(prompts) * s.n)
            for g in rows:
                at = _first_stop(g.text, s.stops)
                if at is not None:
                    g.cut(at)
        return self.answer(record, chat, body["model"], prompts, rows, s, echo, echoed)

    def answer(self, record, chat, model, prompts, rows, s, echo, echoed):
        record.prompt_tokens = sum(rows[i * s.n].prompt_tokens for i in range(len(prompts)))
        if echoed is not None and not record.prompt_tokens:
            record.prompt_tokens = sum(len(tokens) for tokens, _, _ in echoed)
        record.completion_tokens = sum(g.num_tokens for g in rows)
        record.token_arrived()
        usage = _usage(record.prompt_tokens, record.completion_tokens)
        created = int(time.time())
        if chat:
            return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion",
                    "created": created, "model": model, "usage": usage,
                    "choices": [{"index": i, "message": {"role": "assistant",
                                                         "content": g.text},
                                 "logprobs": _chat_logprobs(g),
                                 "finish_reason": g.finish_reason}
                                for i, g in enumerate(rows)]}
        choices = []
        for i, g in enumerate(rows):
            prompt = prompts[i // s.n]
            text = (prompt if echo else "") + g.text
            logprobs = None
            if s.logprobs:
                tokens, values, top = [], [], []
                if echo:
                    prompt_tokens, prompt_values, prompt_top = echoed[i // s.n]
                    tokens, values, top = (list(prompt_tokens), list(prompt_values),
                                           list(prompt_top))
                if g.tokens is not None:
                    tokens, values, top = tokens + g.tokens, values + g.logprobs, top + g.top
                logprobs = _completion_logprobs(tokens, values, top,
                                                0 if echo else len(prompt))
            choices.append({"index": i, "text": text, "logprobs": logprobs,
                            "finish_reason": g.finish_reason})
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": created, "model": model, "choices": choices, "usage": usage}

    async def translate(self, body, record, address, info, prompts):
        """seq2seq through /v1/completions: translate_with_options of each prompt."""
        if body.get("stream") or body.get("echo"):
            raise ApiError(400, "a seq2seq export's completions take neither `stream` nor "
                                "`echo`")
        n = _number(body, "n", 1, 1, MAX_N, integer=True)
        beam_size = _number(body, "beam_size", max(4, n), 1, None, integer=True)
        if n > beam_size:
            raise ApiError(400, f"`n` ({n}) must be at most `beam_size` ({beam_size})",
                           param="n")
        length_penalty = _number(body, "length_penalty", 0.6, -10.0, 10.0)
        max_tokens = _number(body, "max_tokens", 0, 0, None, integer=True)
        logprobs = _number(body, "logprobs", None, 0, MAX_TOP_LOGPROBS, integer=True)
        if logprobs:
            raise ApiError(400, "a seq2seq export gives its tokens' log-probabilities, not "
                                "alternatives: ask for `logprobs`: 0", param="logprobs")
        rows = len(prompts)
        inputs = {"text": list(prompts), "beam_size": np.full(rows, beam_size, np.int32),
                  "length_penalty": np.full(rows, length_penalty, np.float32),
                  "max_length": np.full(rows, max_tokens, np.int32)}
        wanted = ["tokens", "token_log_probs"] if logprobs is not None else []
        out = await self.run(self.serving.predict, address, info, "translate_with_options",
                             inputs, wanted, "token log-probabilities (translate_with_options)")
        if n > out["translations"].shape[1]:
            raise ApiError(400, f"`n` ({n}) is more than the export's widest beam "
                                f"({out['translations'].shape[1]})", param="n")
        choices, completion_tokens = [], 0
        for p in range(rows):
            for i in range(n):
                text = _text(out["translations"][p][i])
                choice = {"index": p * n + i, "text": text, "logprobs": None,
                          "finish_reason": "stop"}
                if i == 0 and "tokens" in out:
                    tokens = [_text(t) for t in out["tokens"][p]]
                    count = sum(1 for t in tokens if t)
                    completion_tokens += count
                    if logprobs is not None:
                        choice["logprobs"] = _completion_logprobs(
                            tokens[:count], [float(v) for v in out["token_log_probs"][p][:count]],
                            [[] for _ in range(count)], 0)
                    if max_tokens and count + 1 >= max_tokens:
                        choice["finish_reason"] = "length"
                choices.append(choice)
        record.completion_tokens = completion_tokens
        record.token_arrived()
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion",
                "created": int(time.time()), "model": body["model"], "choices": choices,
                "usage": _usage(0, completion_tokens)}

    async def embeddings(self, body, record):
        address, info = await self.model_of(body, record)
        if info.family != BERT:
            raise ApiError(400, f"model {info.model!r} is a {info.family} export, not an "
                                "encoder with sentence embeddings", param="model")
        texts = _texts(body, "input")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise ApiError(400, "`encoding_format` is float or base64",
                           param="encoding_format")
        out = await self.run(self.serving.predict, address, info, "serving_default",
                             {"text": texts}, ["sentence_embedding"])
        vectors = np.asarray(out["sentence_embedding"], np.float32)
        if body.get("dimensions") not in (None, vectors.shape[1]):
            raise ApiError(400, f"`dimensions`: this encoder gives {vectors.shape[1]}",
                           param="dimensions")
        record.prompt_tokens = int(np.sum(out["padding_mask"])) if "padding_mask" in out else 0
        data = [{"object": "embedding", "index": i,
                 "embedding": (base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
                               if encoding == "base64" else v.tolist())}
                for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": body["model"],
                "usage": {"prompt_tokens": record.prompt_tokens,
                          "total_tokens": record.prompt_tokens}}

    async def list_models(self):
        names = self.models or await self.run(self.serving.list_models) or sorted(
            self.serving.served)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0,
                                            "owned_by": "kerasllm"} for name in names]}

    # --- streaming ---

    async def stream(self, body, record, address, info, prompts, s, chat):
        """Server-sent events: chunks as OpenAI streams them, then [DONE]."""
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        created, model = int(time.time()), body["model"]
        rows = len(prompts) * s.n

        def event(choices, usage=None):
            chunk = {"id": ident, "object": "chat.completion.chunk" if chat
                     else "text_completion", "created": created, "model": model,
                     "choices": choices}
            if include_usage:
                chunk["usage"] = usage
            return f"data: {json.dumps(chunk)}\n\n"

        def choice(index, text, g=None, finish=None):
            if chat:
                return {"index": index, "delta": {"content": text} if text or finish is None
                        else {}, "logprobs": _chat_logprobs(g) if g is not None else None,
                        "finish_reason": finish}
            logprobs = None
            if g is not None and g.tokens is not None:
                logprobs = _completion_logprobs(g.tokens, g.logprobs, g.top, 0)
            return {"index": index, "text": text, "logprobs": logprobs,
                    "finish_reason": finish}

        # Sent with the first chunk of text, so that a failing first predict request is
        # an error status, not a stream that breaks off.
        opening = event([{"index": i, "delta": {"role": "assistant", "content": ""},
                          "logprobs": None, "finish_reason": None}
                         for i in range(rows)]) if chat else ""
        prompt_of = [p for p in prompts for _ in range(s.n)]
        seeds = [s.seed + i for _ in prompts for i in range(s.n)]
        texts, emitted = [""] * rows, [0] * rows
        counts, finished = [0] * rows, [None] * rows
        prompt_tokens = [0] * rows
        hold = max((len(stop) for stop in s.stops), default=1) - 1
        k = self.stream_chunk_tokens or s.max_tokens
        chunk = 0
        while not all(finished):
            active = [i for i in range(rows) if finished[i] is None]
            wanted = [min(k, s.max_tokens - counts[i]) for i in active]
            results = await self.run(
                generate, self.serving, address, info,
                [prompt_of[i] + texts[i] for i in active],
                [seeds[i] if chunk == 0 else seeds[i] + 7919 * chunk for i in active], s,
                wanted)
            choices = []
            for i, g, asked in zip(active, results, wanted):
                if chunk == 0:
                    prompt_tokens[i] = g.prompt_tokens
                start = len(texts[i])
                text = texts[i] + g.text
                at = _first_stop(text, s.stops, max(0, start - hold))
                if at is not None:  # it may begin in the held-back end of earlier chunks
                    g.cut(max(0, at - start))
                    text = text[:at]
                texts[i] = text
                counts[i] += g.num_tokens
                if g.finish_reason == "stop" or at is not None:
                    finished[i] = "stop"
                elif counts[i] >= s.max_tokens or g.num_tokens < asked:
                    finished[i] = "length"
                end = len(texts[i]) if finished[i] else max(emitted[i],
                                                            len(texts[i]) - hold)
                piece = texts[i][emitted[i]:end]
                emitted[i] = end
                if piece or g.tokens or finished[i]:
                    choices.append(choice(i, piece, g if s.logprobs else None,
                                          finished[i]))
            chunk += 1
            if choices:
                record.token_arrived()
                yield opening + event(choices)
                opening = ""
        record.prompt_tokens = sum(prompt_tokens[::s.n])
        record.completion_tokens = sum(counts)
        if include_usage:
            yield event([], _usage(record.prompt_tokens, record.completion_tokens))
        yield "data: [DONE]\n\n"


def create_app(gateway):
    """The FastAPI app of a Gateway."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.exceptions import HTTPException

    app = FastAPI(title="kerasllm OpenAI-compatible gateway", docs_url=None, redoc_url=None)
    app.state.gateway = gateway

    def error_response(error, record):
        record.finish(error.status, error.message)
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(HTTPException)
    async def http_error(request, error):
        return JSONResponse(ApiError(error.status_code, str(error.detail)).body(),
                            status_code=error.status_code)

    def authorize(request):
        if gateway.api_keys is None:
            return
        header = request.headers.get("authorization", "")
        key = header[len("Bearer "):].strip() if header.startswith("Bearer ") else ""
        if key not in gateway.api_keys:
            raise ApiError(401, "Incorrect API key provided" if key else
                           "Missing API key: send Authorization: Bearer <key>",
                           code="invalid_api_key")

    async def read_json(request):
        limit = gateway.max_request_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise ApiError(413, f"the request body has {length} bytes, more than "
                                f"--max_request_bytes ({limit})")
        data = bytearray()
        async for piece in request.stream():
            data += piece
            if len(data) > limit:
                raise ApiError(413, f"the request body is over --max_request_bytes ({limit})")
        try:
            body = json.loads(data)
        except ValueError:
            raise ApiError(400, "the request body is not JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    async def handle(request, endpoint, method):
        record = Record(gateway, endpoint)
        try:
            authorize(request)
            body = await read_json(request)
            answer = await asyncio.wait_for(method(body, record), gateway.timeout_seconds)
            if hasattr(answer, "__aiter__"):
                return await stream_response(answer, record)
        except ApiError as error:
            return error_response(error, record)
        except asyncio.TimeoutError:
            return error_response(ApiError(504, f"the request took more than "
                                                f"--timeout_seconds "
                                                f"({gateway.timeout_seconds:g})"), record)
        record.finish(200)
        return JSONResponse(answer)

    async def stream_response(events, record):
        """The stream, its validation and first chunk done before the 200 is sent (so
        they fail as errors); a failure later ends it with an error event."""
        deadline = record.start + gateway.timeout_seconds
        first = await asyncio.wait_for(events.__anext__(), deadline - time.monotonic())

        async def rest():
            yield first
            try:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise asyncio.TimeoutError
                    yield await asyncio.wait_for(events.__anext__(), remaining)
            except StopAsyncIteration:
                record.finish(200)
            except asyncio.TimeoutError:
                error = ApiError(504, "the stream took more than --timeout_seconds")
                record.finish(504, error.message)
                yield f"data: {json.dumps(error.body())}\n\n"
            except ApiError as error:
                record.finish(error.status, error.message)
                yield f"data: {json.dumps(error.body())}\n\n"

        return StreamingResponse(rest(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await handle(request, "chat", gateway.chat)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await handle(request, "completions", gateway.completions)

    @app.post("/v1/embeddings")
    async def embeddings(request: Request):
        return await handle(request, "embeddings", gateway.embeddings)

    @app.get("/v1/models")
    async def models(request: Request):
        record = Record(gateway, "models")
        try:
            authorize(request)
        except ApiError as error:
            return error_response(error, record)
        record.finish(200)
        return JSONResponse(await gateway.list_models())

    @app.get("/v1/models/{model:path}")
    async def model(model: str, request: Request):
        record = Record(gateway, "models")
        try:
            authorize(request)
            record.model = model
            await gateway.run(gateway.serving.info, parse_model(model))
        except ApiError as error:
            return error_response(error, record)
        record.finish(200)
        return JSONResponse({"id": model, "object": "model", "created": 0,
                             "owned_by": "kerasllm"})

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(gateway.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/health")
    async def health():
        return PlainTextResponse("ok")

    return app


def read_api_keys(path):
    """The keys of --api_key_file: one per line; blank lines and # comments skipped."""
    try:
        with open(path) as f:
            keys = [line.strip() for line in f if line.strip()
                    and not line.lstrip().startswith("#")]
    except OSError as error:
        raise GatewayError(f"--api_key_file={path}: {error.strerror}") from None
    if not keys:
        raise GatewayError(f"--api_key_file={path} holds no key (one per line)")
    return keys


def define_flags(fv):
    from absl import flags
    flags.DEFINE_string("serving", "http://localhost:8501",
                        "TF Serving's REST address (http://HOST:8501) or gRPC address "
                        "(grpc://HOST:8500).", flag_values=fv)
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on (0.0.0.0 in a "
                        "container).", flag_values=fv)
    flags.DEFINE_integer("port", 8000, "Port to listen on.", flag_values=fv)
    flags.DEFINE_list("models", [], "Model names /v1/models lists (TF Serving has no list "
                      "API); other served models are answered too.", flag_values=fv)
    flags.DEFINE_string("api_key_file", None, "A file of API keys, one per line; requests "
                        "without one of them get 401. Default: no keys.", flag_values=fv)
    flags.DEFINE_integer("max_request_bytes", 1 << 20, "Larger request bodies get 413.",
                         flag_values=fv)
    flags.DEFINE_float("timeout_seconds", 120.0, "A request running longer gets 504 (size "
                       "it with TF Serving's --rest_api_timeout_in_ms).", flag_values=fv)
    flags.DEFINE_integer("stream_chunk_tokens", 0, "Streams: 0 sends the whole generation "
                         "as one chunk; k > 0 generates k tokens per predict request, "
                         "re-sending prompt + text so far (see the module docstring).",
                         flag_values=fv)
    flags.DEFINE_integer("retries", 2, "Further attempts at TF Serving after UNAVAILABLE.",
                         flag_values=fv)


def run(fv):
    import uvicorn
    keys = read_api_keys(fv.api_key_file) if fv.api_key_file else None
    if fv.max_request_bytes <= 0 or fv.timeout_seconds <= 0:
        raise GatewayError("--max_request_bytes and --timeout_seconds must be positive")
    serving = Serving(fv.serving, timeout=fv.timeout_seconds, retries=fv.retries)
    gateway = Gateway(serving, models=fv.models or None, api_keys=keys,
                      max_request_bytes=fv.max_request_bytes,
                      timeout_seconds=fv.timeout_seconds,
                      stream_chunk_tokens=fv.stream_chunk_tokens)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    uvicorn.run(create_app(gateway), host=fv.host, port=fv.port, log_level="warning")


def main():
    from absl import flags

    from kerasllm.command_line import run_command

    define_flags(flags.FLAGS)
    run_command("gateway", run)


if __name__ == "__main__":
    main()
