"""Serving signatures that continue text with a GPT: tokenization, the prefill, the cached
decode loop (kerasllm.generation) and detokenization all run inside the graph, so TF
Serving takes a prompt string and returns text, with decoding settings per request.

TF Serving batches requests by concatenating every input along its first axis, so
every setting is an input of shape [batch] (one value per prompt) and every input
must be sent with each request; `serving_default` takes the prompt alone and uses
the defaults fixed at export.
"""
import functools

import tensorflow as tf

from kerasllm.data.chat_template import IM_END
from kerasllm.export.inputs import LENGTH_PENALTY_RANGE, TEXT, clamped, signature
from kerasllm.generation.beam_search import beam_search
from kerasllm.generation.compiled import compiled_decoding
from kerasllm.generation.decode import LENGTH, STOP_SEQUENCE, STOP_TOKEN, generate
from kerasllm.generation.prompts import left_pad

PROMPT = tf.TensorSpec([None], tf.string, name="prompt")
MESSAGE = tf.TensorSpec([None], tf.string, name="message")
FIELD = tf.TensorSpec([None], tf.string, name="field")
SETTINGS = {
    "max_new_tokens": tf.TensorSpec([None], tf.int32, name="max_new_tokens"),
    "temperature": tf.TensorSpec([None], tf.float32, name="temperature"),
    "top_k": tf.TensorSpec([None], tf.int32, name="top_k"),
    "top_p": tf.TensorSpec([None], tf.float32, name="top_p"),
    "seed": tf.TensorSpec([None], tf.int32, name="seed"),
    "stop": tf.TensorSpec([None], tf.string, name="stop"),
}
LENGTH_PENALTY = tf.TensorSpec([None], tf.float32, name="length_penalty")
TOP_LOGPROBS = tf.TensorSpec([None], tf.int32, name="top_logprobs")
# As OpenAI's API: at most 20 alternatives per generated token.
MAX_TOP_LOGPROBS = 20
FINISH_REASONS = {LENGTH: "length", STOP_TOKEN: "stop_token", STOP_SEQUENCE: "stop"}


def gpt_signatures(model, tokenizer, *, max_prompt_length, max_new_tokens,
                   default_new_tokens=None, stop_token_ids=(), num_beams=4, compiled=False,
                   chat_template=None):
    """{signature name: tf.function} for a GptCausalLM and its tokenizer; the same
    functions are GptCausalLM's Python methods (generate, score, chat), which pass
    `compiled`: the decoding loop compiled with XLA inside them (never in an export).

    generate_with_options(prompt [N], max_new_tokens [N] (clipped to [1,
    `max_new_tokens`]), temperature [N] (0 or less = greedy), top_k [N] (0 = off),
    top_p [N] (1 = off; clipped to (0, 1]), seed [N], stop [N] (a string ending the
    text, "" = none)) and generate(prompt [N]) = serving_default (greedy,
    `default_new_tokens`, no stop string) return
        text string [N], the continuation without the stop token or string;
        token_ids int32 [N, max_new_tokens] (the tokenizer's pad id after the end);
        num_tokens int32 [N], tokens in `text`;
        finish_reason string [N]: "length", "stop_token" or "stop";
        token_log_probs float32 [N, max_new_tokens], each of token_ids' log-probability
        under the model (its log-softmax, before temperature, top-k or top-p shaped
        the draw; 0 after the end);
        prompt_num_tokens int32 [N], the prompt's tokens as the model read them (<s>
        included, after truncation).
    generate_with_logprobs takes generate_with_options' inputs and top_logprobs [N]
    (clipped to [0, 20]) and also returns
        tokens string [N, max_new_tokens], each token of token_ids as text ("" after
        the end; a character split over tokens shows as U+FFFD);
        top_token_ids int32, top_log_probs float32 and top_tokens string, each
        [N, max_new_tokens, 20]: at each step the row's top_logprobs most likely
        tokens, most likely first (-1, 0 and "" in the other columns and after the
        end).
    generate_beam(prompt [N], length_penalty [N] (GNMT alpha, e.g. 0.6; 0 = the
    log-probability alone; clipped to [-10, 10])) returns the `num_beams` best
    continuations: texts string [N, num_beams] and scores float32 [N, num_beams]
    (log-probability over the length penalty), best first. A NaN setting reads as
    0 (clipped into its range: a NaN temperature is greedy, a NaN top_p keeps the
    most likely token); settings with another number of rows than the prompts are
    an InvalidArgument (see kerasllm.export.inputs).

    score(text [N]) returns log_probability float32 [N], the sum over the text's
    tokens of log p(token | the tokens before it), and num_tokens int32 [N], how
    many were scored (all but the first when the tokenizer has no <s>; the last
    max_prompt_length + max_new_tokens tokens of a longer text): for reranking.
    Token by token: tokens string [N, L], the text's tokens after <s> ("" after
    the end), token_log_probs float32 [N, L] (0 for a first token that nothing
    predicts, and after the end), text_lengths int32 [N], each row's tokens, and
    top_token_ids, top_log_probs, top_tokens [N, L, 20], the 20 tokens the model
    found most likely at each token's place (as generate_with_logprobs gives them;
    -1, 0, "" where nothing predicts).
    With a `chat_template` (a kerasllm.data.chat_template.ChatTemplate),
    chat(message [N]) answers each message as one user turn rendered by it
    (greedy), returning what generate returns.
    describe(field [N]) returns value string [N], what a client needs to know of
    the model: "chat_template" (the Jinja text, "" without one), "bos_token" and
    "eos_token" (the strings the template sees), "max_prompt_length",
    "max_new_tokens"; "" for other fields; and known bool [N], whether the model
    has the field (two outputs, so that TF Serving's REST API names them: it
    answers a single output bare).

    A prompt is its tokens after the tokenizer's <s> (if it has one), its last
    `max_prompt_length` tokens when longer. Without an <s>, an empty prompt is the
    end-of-text token alone, which also starts a text in GPT-2's training data.
    Generation stops at </s> and at `stop_token_ids` (e.g. a chat model's
    end-of-turn token). A stop string is matched as the tokens it tokenizes to on
    its own.
    """
    gpt = _GptServing(model, tokenizer, max_prompt_length, max_new_tokens,
                      default_new_tokens or max_new_tokens, stop_token_ids, num_beams,
                      compiled)
    greedy = signature(PROMPT)(gpt.greedy)
    description = {"max_prompt_length": str(max_prompt_length),
                   "max_new_tokens": str(max_new_tokens)}
    if chat_template is not None:
        description.update(chat_template=chat_template.source,
                           bos_token=chat_template.bos_token or "",
                           eos_token=chat_template.eos_token or "")
    signatures = {
        "serving_default": greedy, "generate": greedy,
        "generate_with_options": signature(PROMPT, *SETTINGS.values())(
            gpt.generate_with_options),
        "generate_with_logprobs": signature(PROMPT, *SETTINGS.values(), TOP_LOGPROBS)(
            gpt.generate_with_logprobs),
        "generate_beam": signature(PROMPT, LENGTH_PENALTY)(gpt.generate_beam),
        "score": signature(TEXT)(gpt.score),
        "describe": signature(FIELD)(lambda field: described(field, description)),
    }
    if chat_template is not None:
        prefix, suffix = chat_template.user_message_frame()

        def chat(message):
            return gpt.chat(message, prefix, suffix)

        signatures["chat"] = signature(MESSAGE)(chat)
    return signatures


def described(field, description):
    """{"value": description[f] for each f of `field` [N] ("" for unknown fields),
    "known": bool [N]}."""
    keys = tf.constant(["", *description])
    values = tf.constant(["", *description.values()])
    matches = tf.cast(tf.equal(field[:, None], keys[None, :]), tf.int32)
    index = tf.argmax(matches, axis=1)
    return {"value": tf.gather(values, index), "known": index > 0}


class _GptServing:
    """The bodies of gpt_signatures' signatures, sharing the tokenization of prompts,
    the decoding settings and the detokenization."""

    def __init__(self, model, tokenizer, max_prompt_length, max_new_tokens,
                 default_new_tokens, stop_token_ids, num_beams, compiled):
        self.model, self.tokenizer = model, tokenizer
        self.generate, self.beam_search = (
            (compiled_decoding(generate, model), compiled_decoding(beam_search, model))
            if compiled else (functools.partial(generate, model.generation_step,
                                                model.init_cache),
                              functools.partial(beam_search, model.generation_step,
                                                model.init_cache)))
        self.max_prompt_length, self.max_new_tokens = max_prompt_length, max_new_tokens
        self.default_new_tokens, self.num_beams = default_new_tokens, num_beams
        self.eos = getattr(tokenizer, "eos_id", None)
        self.bos = getattr(tokenizer, "bos_id", None)
        chat_end = tokenizer.special_ids().get(IM_END)
        self.stops = sorted({*stop_token_ids,
                             *(t for t in (self.eos, chat_end) if t is not None)}) or [-1]

    def token_ids(self, text, most):
        """int ragged [N, (tokens)]: <s> (or end-of-text for an empty text) and the
        text's tokens, the last `most` of them."""
        ids = self.tokenizer.tokenize(text)
        if self.bos is not None:
            ids = tf.concat([tf.fill([ids.nrows(), 1], tf.cast(self.bos, ids.dtype)), ids],
                            axis=1)
        elif self.eos is not None:
            empty = tf.cast(tf.equal(ids.row_lengths(), 0), ids.row_splits.dtype)
            ids = tf.concat([tf.RaggedTensor.from_row_lengths(
                tf.fill([tf.reduce_sum(empty)], tf.cast(self.eos, ids.dtype)), empty), ids],
                axis=1)
        lengths = ids.row_lengths()
        # Over-long texts keep their end: what a continuation follows.
        ids = tf.RaggedTensor.from_row_lengths(
            ids.flat_values, lengths).with_row_splits_dtype(tf.int64)
        return tf.ragged.boolean_mask(ids, ids.with_flat_values(
            tf.ragged.range(lengths).flat_values >= tf.repeat(lengths - most, lengths)))

    def prompts(self, prompt):
        """Prompts: the left-padded token ids of prompt string [N]."""
        ids = self.token_ids(prompt, self.max_prompt_length)
        with tf.control_dependencies([tf.debugging.assert_positive(
                ids.row_lengths(), message="a prompt has no tokens; send some text")]):
            return left_pad(tf.identity(ids), pad_id=self.tokenizer.pad_id)

    def text_of(self, token_ids, count):
        """The first `count` [N] of each row of `token_ids` [N, T], detokenized."""
        return self.tokenizer.detokenize(tf.RaggedTensor.from_tensor(token_ids, lengths=count))

    def stop_sequences(self, stop):
        """int32 [N, 1, K]: each row's stop string as tokens, -1 after them (at least
        one column)."""
        stop_ids = self.tokenizer.tokenize(stop)
        width = tf.maximum(tf.reduce_max(tf.concat([stop_ids.row_lengths(), [1]], 0)), 1)
        return tf.cast(stop_ids.to_tensor(-1, shape=tf.stack([stop_ids.nrows(), width])),
                       tf.int32)[:, None]

    def generate_with_options(self, prompt, max_new_tokens, temperature, top_k, top_p, seed,
                              stop):
        """Each prompt [N] continued with its own settings [N] (see gpt_signatures)."""
        return self.continuations(prompt, max_new_tokens, temperature, top_k, top_p, seed,
                                  stop)[1]

    def continuations(self, prompt, max_new_tokens, temperature, top_k, top_p, seed, stop,
                      top_logprobs=0):
        """(Generated, generate_with_options' outputs); Generated holds `top_logprobs`
        (a Python int) alternatives at each step."""
        prompts = self.prompts(prompt)
        generated = self.generate(
            prompts,
            self.max_new_tokens, temperature=clamped(temperature, low=0.0),
            top_k=clamped(top_k, low=0), top_p=clamped(top_p, 1e-6, 1.0), seeds=seed,
            stop_token_ids=tf.constant(self.stops, tf.int32),
            stop_sequences=self.stop_sequences(stop), pad_id=self.tokenizer.pad_id,
            max_new_tokens_per_row=clamped(max_new_tokens, 1, self.max_new_tokens),
            top_logprobs=top_logprobs)
        count = generated.lengths - generated.stop_lengths
        return generated, {
            "text": self.text_of(generated.token_ids, count),
            "token_ids": generated.token_ids,
            "num_tokens": count,
            "finish_reason": tf.gather(
                tf.constant([FINISH_REASONS[k] for k in sorted(FINISH_REASONS)]),
                generated.finish_reasons),
            "token_log_probs": generated.log_probs,
            "prompt_num_tokens": tf.cast(prompts.lengths, tf.int32),
        }

    def generate_with_logprobs(self, prompt, max_new_tokens, temperature, top_k, top_p, seed,
                               stop, top_logprobs):
        """generate_with_options() with each token's text and each row's top_logprobs
        [N] most likely alternatives at every step."""
        generated, outputs = self.continuations(
            prompt, max_new_tokens, temperature, top_k, top_p, seed, stop,
            top_logprobs=MAX_TOP_LOGPROBS)
        steps = tf.range(self.max_new_tokens)
        ended = steps[None, :] >= generated.lengths[:, None]
        wanted = (tf.range(MAX_TOP_LOGPROBS)[None, None, :] <
                  clamped(top_logprobs, 0, MAX_TOP_LOGPROBS)[:, None, None])
        top_ids = tf.where(wanted, generated.top_ids, -1)
        return {**outputs,
                "tokens": tf.where(ended, "", self.tokenizer.token_texts(generated.token_ids)),
                "top_token_ids": top_ids,
                "top_log_probs": tf.where(wanted, generated.top_log_probs, 0.0),
                "top_tokens": tf.where(top_ids >= 0, self.tokenizer.token_texts(top_ids), "")}

    def greedy(self, prompt):
        """generate_with_options() greedy, `default_new_tokens`, no stop string."""
        rows = tf.shape(prompt)
        return self.generate_with_options(
            prompt, tf.fill(rows, self.default_new_tokens), tf.zeros(rows),
            tf.zeros(rows, tf.int32), tf.ones(rows), tf.zeros(rows, tf.int32),
            tf.fill(rows, ""))

    def chat(self, message, prefix, suffix):
        """greedy() of each message between the chat template's `prefix` and `suffix`."""
        return self.greedy(tf.strings.join([prefix, message, suffix]))

    def generate_beam(self, prompt, length_penalty):
        """texts [N, num_beams] and their scores, best first, of prompt [N]."""
        beams = self.beam_search(
            self.prompts(prompt),
            self.max_new_tokens, self.num_beams,
            length_penalty_alpha=clamped(length_penalty, *LENGTH_PENALTY_RANGE),
            stop_token_ids=tf.constant(self.stops, tf.int32), pad_id=self.tokenizer.pad_id)
        flat_ids = tf.reshape(beams.token_ids, [-1, self.max_new_tokens])
        flat_lengths = tf.reshape(beams.lengths, [-1])
        last = tf.gather(flat_ids, tf.maximum(flat_lengths - 1, 0), batch_dims=1)
        ends_with_stop = tf.reduce_any(tf.equal(last[:, None], tf.constant(self.stops)[None]),
                                       axis=1)
        count = flat_lengths - tf.cast(ends_with_stop, tf.int32)
        return {"texts": tf.reshape(self.text_of(flat_ids, count), [-1, self.num_beams]),
                "scores": beams.scores}

    def score(self, text):
        """log_probability [N] of text [N] and num_tokens [N], how many it sums, and
        the text's tokens with theirs (see gpt_signatures)."""
        ids = self.token_ids(text, self.max_prompt_length + self.max_new_tokens)
        mask = tf.sequence_mask(ids.row_lengths(), dtype=tf.int32)
        dense = tf.cast(ids.to_tensor(self.tokenizer.pad_id), tf.int32)
        logits = self.model({"token_ids": dense, "padding_mask": mask},
                            training=False)["logits"]
        log_softmax = tf.nn.log_softmax(tf.cast(logits[:, :-1], tf.float32))
        picked = tf.gather(log_softmax, dense[:, 1:], batch_dims=2)
        scored = tf.cast(mask[:, 1:], tf.float32)
        top_log_probs, top_ids = tf.math.top_k(log_softmax, MAX_TOP_LOGPROBS)
        predicted = mask[:, 1:, None] > 0
        # Per token: each real token's, nothing for the first; then the text's own
        # tokens, without the <s> that token_ids puts first.
        start = 0 if self.bos is None else 1

        def per_token(values, nothing):
            first = tf.fill(tf.shape(values[:, :1]), tf.cast(nothing, values.dtype))
            return tf.concat([first, values], axis=1)[:, start:]

        top_ids = per_token(tf.where(predicted, top_ids, -1), -1)
        return {"log_probability": tf.reduce_sum(picked * scored, axis=1),
                "num_tokens": tf.reduce_sum(mask[:, 1:], axis=1),
                "tokens": tf.where(mask[:, start:] > 0,
                                   self.tokenizer.token_texts(dense[:, start:]), ""),
                "token_log_probs": per_token(picked * scored, 0),
                "text_lengths": tf.reduce_sum(mask[:, start:], axis=1),
                "top_token_ids": top_ids,
                "top_log_probs": per_token(tf.where(predicted, top_log_probs, 0.0), 0),
                "top_tokens": tf.where(top_ids >= 0, self.tokenizer.token_texts(top_ids), "")}


def warmup_inputs(num_rows=3):
    """Sample values of the settings inputs, for the export's warmup requests."""
    return {"generate_with_options": {
        "prompt": ["Once upon a time", "To be, or not to be", "word " * 200][:num_rows],
        "max_new_tokens": [4] * num_rows, "temperature": [0.0, 0.8, 1.0][:num_rows],
        "top_k": [0, 40, 0][:num_rows], "top_p": [1.0, 1.0, 0.9][:num_rows],
        "seed": [0, 1, 2][:num_rows], "stop": ["", "\n", "."][:num_rows]},
        "generate_with_logprobs": {
            "prompt": ["Once upon a time", "To be, or not to be", "word " * 200][:num_rows],
            "max_new_tokens": [4] * num_rows, "temperature": [0.0, 0.8, 1.0][:num_rows],
            "top_k": [0, 40, 0][:num_rows], "top_p": [1.0, 1.0, 0.9][:num_rows],
            "seed": [0, 1, 2][:num_rows], "stop": ["", "\n", "."][:num_rows],
            "top_logprobs": [0, 5, 20][:num_rows]},
        "generate_beam": {"prompt": ["Once upon a time", "To be, or not to be",
                                      "word " * 200][:num_rows],
                           "length_penalty": [0.6] * num_rows}}
