"""A GPT decoder as a causal language model: next-token logits, loss and decoding steps."""
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kerasllm.data import chat_examples
from kerasllm.data.batching import trim_padding
from kerasllm.data.chat_template import IM_END, IM_START, ChatTemplate
from kerasllm.errors import DataError
from kerasllm.export import gpt_signatures
from kerasllm.models.gpt.backbone import GptDecoder
from kerasllm.models.language_model import LanguageModelTask
from kerasllm.models.losses import masked_mean, sparse_cross_entropy
from kerasllm.raw_text import per_row, text_batch, unbatched
from kerasllm.serving.batching import DECODING

# New tokens per call of generate/chat, and the most one export's requests may ask.
DEFAULT_NEW_TOKENS = 64


def chat_renderer(chat_template, tokenizer):
    """The ChatTemplate of a model with `chat_template` (Jinja text or None) and
    `tokenizer` (see GptCausalLM.chat_renderer), or None."""
    if chat_template is None and not {IM_START, IM_END} <= set(tokenizer.special_ids()):
        return None
    return ChatTemplate.for_model(chat_template, tokenizer)


@keras.saving.register_keras_serializable(package="kerasllm")
class GptCausalLM(LanguageModelTask):
    """A GptDecoder and a projection of its outputs onto the vocabulary (see
    LanguageModelTask).

    Inputs: a batch dict with token_ids, padding_mask: int [batch, seq] (and
        optionally positions; see GptDecoder).
    Outputs: dict with logits float32 [batch, seq, vocab]; the logits at position t
        score the token at t + 1.

    Loss = next-token cross-entropy averaged over the predictions whose target and
    input tokens are both real (padding_mask 1 at t + 1 and at t) and, when the batch
    has a target_mask int [batch, seq] (supervised fine-tuning: 1 on the responses'
    tokens, see kerasllm.data.chat_examples), whose target is one; metrics accuracy
    (the target's logit is the largest, same positions) and perplexity = exp(loss).

    Decoding (the step function kerasllm.generation drives):
        weights = model.decoding_weights()  # optional; once per generate call
        cache = model.init_cache(batch_size, max_length)
        logits, cache = model.generation_step(token_ids, cache, cache_index,
                                              positions, key_mask, weights=weights)
    e.g. generate(model.generation_step, model.init_cache, prompts, n,
                  weights=model.decoding_weights()).

    With a tokenizer (from_preset gives one), on raw text, through the functions its
    export serves (kerasllm.export.gpt_signatures; decoding compiled with XLA
    in-process where that is faster):
        model.generate("To be, or", max_new_tokens=20, temperature=0.8, seed=1)
        model.score(["a text", ...]); model.chat("What is 2 + 2?")
        model.fit(["a document", ...])   # "<s> text </s>", sequence_length tokens at most
        model.export("saved_models/my_gpt")
    """

    backbone_class = GptDecoder

    def __init__(self, backbone, tokenizer=None, sequence_length=None, chat_template=None,
                 **kwargs):
        super().__init__(backbone, tokenizer=tokenizer, **kwargs)
        self.sequence_length = int(sequence_length or backbone.config.max_sequence_length)
        self.chat_template = chat_template

    def task_config(self):
        return {"sequence_length": self.sequence_length, "chat_template": self.chat_template}

    @classmethod
    def preset_arguments(cls, preset):
        return {"chat_template": preset.chat_template} if preset.chat_template else {}

    def chat_renderer(self):
        """The ChatTemplate chat() and the export's chat signature render with: the
        model's `chat_template` (Jinja text, as its preset ships it or fine-tuning
        set it), else ChatML where the tokenizer has ChatML's tokens; None when the
        model has neither (it was not trained to chat)."""
        return chat_renderer(self.chat_template, self.needs_tokenizer("chat"))

    def preprocess(self, x, y=None):
        """Documents string [B] -> token_ids, padding_mask [B, L]: "<s> text </s>" (no
        <s> for a tokenizer without one), the first sequence_length tokens, padded to
        the batch's longest."""
        if y is not None:
            raise DataError("a language model trains on texts alone; pass no targets")
        tokenizer = self.needs_tokenizer("fit")
        ids = tokenizer.tokenize(x)
        ends = tf.fill([ids.nrows(), 1], tf.cast(tokenizer.eos_id, ids.dtype))
        return trim_padding(tokenizer.pack([tf.concat([ids, ends], axis=1)],
                                           self.sequence_length), length_multiple=1)

    def text_dataset(self, x, y=None, batch_size=None, shuffle=False, seed=None):
        """As TaskModel.text_dataset, and chat or instruction examples: a list of
        {"messages": [...]} or {"prompt", "response"} dicts, rendered with the model's
        chat template (see chat_renderer; the plain default without one), the loss
        on the replies' tokens alone, sequence_length tokens at most (cut from the
        prompt side): the batches finetune_gpt trains on. A model without a chat
        template keeps the one it is trained with."""
        if not (isinstance(x, (list, tuple)) and x and isinstance(x[0], dict)):
            return super().text_dataset(x, y, batch_size, shuffle, seed)
        tokenizer = self.needs_tokenizer("fit")
        template = ChatTemplate.for_model(self.chat_template, tokenizer)
        # The model learns this format: chat() and the export's chat use it from now on.
        self.chat_template = template.source
        examples, _ = chat_examples.tokenize_conversations(
            chat_examples.conversations_of(x), template, tokenizer, self.sequence_length)
        batch_size = min(batch_size or 32, len(x))
        settings = {"pad_id": tokenizer.pad_id, "max_seq_length": self.sequence_length,
                    "batch_size": batch_size}
        if not shuffle:
            return chat_examples.chat_dataset(examples, training=False, **settings)
        # One epoch: n // B batches of similar lengths, in an order drawn from `seed`.
        return chat_examples.chat_dataset(examples, training=True, seed=seed,
                                          **settings).take(len(x) // batch_size)

    def serving_signatures(self, max_new_tokens=None, num_beams=4, stop_token_ids=(),
                           compiled=False):
        """gpt_signatures of this model: prompts of up to the position table less
        `max_new_tokens` tokens (default DEFAULT_NEW_TOKENS, at most half the table)."""
        tokenizer = self.needs_tokenizer("generate")
        limit = self.backbone.config.max_sequence_length
        max_new_tokens = self.new_tokens_cap(max_new_tokens)
        if not 1 <= max_new_tokens < limit:
            raise DataError(f"max_new_tokens={max_new_tokens} must be in [1, {limit}): the "
                            f"model has {limit} positions for prompt and answer")
        return gpt_signatures.gpt_signatures(
            self, tokenizer, max_prompt_length=limit - max_new_tokens,
            max_new_tokens=max_new_tokens, num_beams=num_beams,
            stop_token_ids=tuple(stop_token_ids), compiled=compiled,
            chat_template=self.chat_renderer())

    def export_options(self):
        return {"warmup_inputs": gpt_signatures.warmup_inputs(), "batching": DECODING}

    def new_tokens_cap(self, max_new_tokens=None):
        """The most new tokens a call asks for (one value, or the largest of per-row
        values); None: DEFAULT_NEW_TOKENS, at most half the position table."""
        if max_new_tokens is None:
            return min(DEFAULT_NEW_TOKENS, self.backbone.config.max_sequence_length // 2)
        return int(np.max(max_new_tokens))

    def generate(self, prompts, max_new_tokens=None, temperature=0.0, top_k=0,
                 top_p=1.0, seed=0, stop="", num_beams=1, length_penalty=0.6,
                 top_logprobs=None, return_details=False, jit_compile=None):
        """Continues each prompt (a string, or a list) with up to `max_new_tokens` tokens
        (default DEFAULT_NEW_TOKENS, at most half the position table).

        Settings are one value for every prompt or one per prompt: temperature (0 =
        greedy), top_k (0 = off), top_p (1 = off), seed (sampling is a function of
        it), stop (a string that ends the text). num_beams > 1 runs beam search
        instead (GNMT `length_penalty`; sampling settings unused). Prompts longer
        than the position table less max_new_tokens keep their last tokens.
        jit_compile: compile the decoding loop with XLA (None: where it is faster,
        see decoding_compiled); the first call of each batch and prompt-width
        bucket compiles, later ones reuse it.

        Returns the continuation text (a list for a list); with return_details, a
        dict: text, token_ids, num_tokens, finish_reason ("length", "stop_token",
        "stop"), token_log_probs (each token's log-probability under the model) and
        prompt_num_tokens for sampling, with `top_logprobs` (0 to 20, one or per
        prompt) also tokens and the most likely alternatives at each step
        (top_token_ids, top_log_probs, top_tokens: see
        kerasllm.export.gpt_signatures); texts and scores (n-best, best first) for
        beam search.
        """
        texts, single = text_batch(prompts, "prompts")
        rows = int(texts.shape[0])
        if not rows:
            return {} if return_details else []
        cap = self.new_tokens_cap(max_new_tokens)
        if num_beams > 1:
            outputs = self.run_text_function(
                "generate_beam", {"prompt": texts, "length_penalty": per_row(
                    length_penalty, rows, tf.float32, "length_penalty")}, False,
                max_new_tokens=cap, num_beams=num_beams,
                compiled=self.decoding_compiled(jit_compile))
            outputs["text"] = [nbest[0] for nbest in outputs["texts"]]
        else:
            settings = {"max_new_tokens": (cap if max_new_tokens is None else max_new_tokens,
                                           tf.int32),
                        "temperature": (temperature, tf.float32), "top_k": (top_k, tf.int32),
                        "top_p": (top_p, tf.float32), "seed": (seed, tf.int32),
                        "stop": (stop, tf.string)}
            if top_logprobs is not None:
                settings["top_logprobs"] = (top_logprobs, tf.int32)
            outputs = self.run_text_function(
                "generate_with_options" if top_logprobs is None else "generate_with_logprobs",
                {"prompt": texts, **{name: per_row(value, rows, dtype, name)
                                     for name, (value, dtype) in settings.items()}},
                False, max_new_tokens=cap, compiled=self.decoding_compiled(jit_compile))
        return unbatched(outputs if return_details else outputs["text"], single)

    def chat(self, messages, **settings):
        """The assistant's answer to a conversation, rendered with the model's chat
        template (see chat_renderer; SmolLM2's own, with its default system prompt):
        `messages` is a user message (a string) or a list of
        {"role": "system"|"user"|"assistant", "content": ...}; a list of such
        conversations answers each. `settings` are generate's."""
        renderer = self.chat_renderer()
        if renderer is None:
            raise DataError("this model has no chat template and its tokenizer no ChatML "
                            "tokens (<|im_start|>, <|im_end|>): it was not trained to chat; "
                            "use generate, or fine-tune it on chat data (finetune_gpt)")
        single = isinstance(messages, str) or (
            bool(messages) and isinstance(messages[0], dict))
        conversations = [messages] if single else list(messages)
        prompts = [renderer.render([{"role": "user", "content": c}] if isinstance(c, str)
                                   else c, add_generation_prompt=True)
                   for c in conversations]
        return unbatched(self.generate(prompts, **settings), single)

    def save_to_gguf(self, path, dtype="f32", overwrite=False):
        """Writes this model, its tokenizer and chat template as a GGUF file for
        llama.cpp ("f32", "f16" or "q8_0"; see kerasllm.convert.gguf_export)."""
        from kerasllm.convert.gguf_export import save_to_gguf
        return save_to_gguf(self, path, dtype=dtype, overwrite=overwrite)

    def score(self, texts):
        """log p(text) of each text (a string, or a list): {"log_probability",
        "num_tokens"} (how many tokens the sum covers: all but the first of the
        text's last max_sequence_length tokens, <s> included where there is one)."""
        texts, single = text_batch(texts)
        return self.run_text_function("score", {"text": texts}, single, max_new_tokens=1)

    def call(self, inputs, training=None):
        sequence = self.backbone(inputs, training=training)["sequence_output"]
        return {"logits": self.logits(sequence)}

    def compute_loss_and_metrics(self, batch, training=False):
        """Returns (loss, {"accuracy", "perplexity"}): float32 scalars over the
        batch's real next-token predictions."""
        # Every position scores a target, the last one a dummy of weight 0: slicing
        # off the last position's logits instead copies [batch, seq, vocab] floats
        # (and pads their gradient back), which cost a quarter of a gpt_tiny step.
        logits = self(batch, training=training)["logits"]
        token_ids = batch["token_ids"]
        targets = ops.concatenate([token_ids[:, 1:], ops.zeros_like(token_ids[:, :1])], 1)
        real = ops.cast(batch["padding_mask"], "float32")
        # A target needs a real token before it: a left-padded row's first token
        # has nothing to be predicted from.
        predicted = real[:, 1:] * real[:, :-1]
        if "target_mask" in batch:  # fine-tuning: only the responses' tokens are targets
            predicted = predicted * ops.cast(batch["target_mask"][:, 1:], "float32")
        weights = ops.concatenate([predicted, ops.zeros_like(real[:, :1])], 1)
        token = sparse_cross_entropy(targets, logits)
        loss = masked_mean(token.loss, weights)
        return loss, {"accuracy": masked_mean(token.correct, weights),
                      "perplexity": ops.exp(loss)}

    def init_cache(self, batch_size, max_length):
        """An empty KV cache for `batch_size` sequences of up to `max_length` tokens
        (prompt included): a flat dict of tensors, each with the batch as its first
        axis (see GptDecoder.init_cache)."""
        return self.backbone.init_cache(batch_size, max_length)

    def generation_step(self, token_ids, cache, cache_index, positions, key_mask,
                        weights=None):
        """Logits for n new tokens per row, and the cache with them written.

        Args:
          token_ids: int [batch, n], the tokens at cache slots cache_index ..
            cache_index + n - 1 (the whole left-padded prompt first, with
            cache_index 0; then one token per step).
          cache: from `init_cache` or the previous step.
          cache_index: int scalar, the slot of token_ids[:, 0], the same for all rows.
          positions: int [batch, n], the tokens' positions: the prompt's
            `kerasllm.models.gpt.backbone.positions_from_padding_mask(prompt_mask)`,
            then one more than the row's last position at each step.
          key_mask: int/bool [batch, max_length], 1 = the slot holds a real token
            (0 on the prompt's padding; slots not yet written may be 1).
          weights: None, or `decoding_weights()`; the logits are the same either way.
        Returns:
          (logits float32 [batch, n, vocab], the logits at slot s scoring the token
          for slot s + 1; the new cache).
        """
        sequence, cache = self.backbone.call_with_cache(token_ids, cache, cache_index,
                                                        positions, key_mask)
        return self.logits(sequence, weights), cache
