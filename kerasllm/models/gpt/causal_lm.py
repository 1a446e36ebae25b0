"""A GPT decoder as a causal language model: next-token logits, loss and decoding steps."""
import keras
from keras import ops

from kerasllm.models.gpt.backbone import GptDecoder
from kerasllm.models.language_model import LanguageModelTask
from kerasllm.models.losses import masked_mean, sparse_cross_entropy


@keras.saving.register_keras_serializable(package="kerasllm")
class GptCausalLM(LanguageModelTask):
    """A GptDecoder and a projection of its outputs onto the vocabulary (see
    LanguageModelTask).

    Inputs: a batch dict with token_ids, padding_mask: int [batch, seq] (and
        optionally positions; see GptDecoder).
    Outputs: dict with logits float32 [batch, seq, vocab]; the logits at position t
        score the token at t + 1.

    Loss = next-token cross-entropy averaged over the predictions whose target and
    input tokens are both real (padding_mask 1 at t + 1 and at t); metrics accuracy
    (the target's logit is the largest, same positions) and perplexity = exp(loss).

    Decoding (the step function kerasllm.generation drives):
        weights = model.decoding_weights()  # optional; once per generate call
        cache = model.init_cache(batch_size, max_length)
        logits, cache = model.generation_step(token_ids, cache, cache_index,
                                              positions, key_mask, weights=weights)
    e.g. generate(model.generation_step, model.init_cache, prompts, n,
                  weights=model.decoding_weights()).
    """

    backbone_class = GptDecoder

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
        weights = ops.concatenate([real[:, 1:] * real[:, :-1], ops.zeros_like(real[:, :1])], 1)
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
