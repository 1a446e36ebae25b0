"""An encoder-decoder Transformer as a conditional language model (e.g. a translator):
next-target-token logits, the label-smoothed loss and decoding steps."""
import keras
from keras import ops

from kerasllm.models.losses import masked_mean, sparse_cross_entropy
from kerasllm.models.language_model import LanguageModelTask
from kerasllm.models.seq2seq.backbone import Seq2SeqTransformer


@keras.saving.register_keras_serializable(package="kerasllm")
class Seq2SeqLM(LanguageModelTask):
    """A Seq2SeqTransformer and a projection of its decoder's outputs onto the
    vocabulary: the shared token table itself when config.tie_embeddings (the
    paper's), else its own `lm_head` (no bias).

    Inputs: a batch dict as Seq2SeqTransformer takes (source_ids,
        source_padding_mask, target_ids = the decoder's inputs, target_padding_mask).
    Outputs: dict with logits float32 [batch, target_length, vocab]; the logits at
        position t score the target token at t + 1.

    Training batches hold whole targets instead: target_ids [batch, T] = a start
    token, the target, an end token, then right padding. `compute_loss_and_metrics`
    feeds target_ids[:, :-1] to the decoder and scores target_ids[:, 1:] where
    target_padding_mask is 1 there (and at the input before it); loss = the
    cross-entropy smoothed by config.label_smoothing, metrics accuracy (the
    target's logit is the largest) and perplexity = exp(the unsmoothed cross-entropy).

    Decoding (the step function kerasllm.generation drives, prompts = the start
    token, or a forced target prefix):
        context = model.encode_context(source_ids, source_padding_mask)
        cache = model.init_cache(batch_size, max_length)
        logits, cache = model.generation_step(token_ids, cache, cache_index,
                                              positions, key_mask, context=context)
    """

    backbone_class = Seq2SeqTransformer

    def call(self, inputs, training=None):
        sequence = self.backbone(inputs, training=training)["sequence_output"]
        return {"logits": self.logits(sequence)}

    def compute_loss_and_metrics(self, batch, training=False):
        """Returns (loss, {"accuracy", "perplexity"}): float32 scalars over the
        batch's real target tokens (see the class docstring)."""
        target_ids, target_mask = batch["target_ids"], batch["target_padding_mask"]
        decoder_inputs = {**batch, "target_ids": target_ids[:, :-1],
                          "target_padding_mask": target_mask[:, :-1]}
        logits = self(decoder_inputs, training=training)["logits"]
        labels = target_ids[:, 1:]
        real = ops.cast(target_mask, "float32")
        # target_padding_mask[:, 1:] for right-padded targets; the product also
        # keeps a left-padded row's first token from being a target of padding.
        weights = real[:, 1:] * real[:, :-1]
        token = sparse_cross_entropy(labels, logits, self.backbone.config.label_smoothing)
        return masked_mean(token.loss, weights), {
            "accuracy": masked_mean(token.correct, weights),
            "perplexity": ops.exp(masked_mean(token.nll, weights))}

    def encode_context(self, source_ids, source_padding_mask):
        """What every decoding step of these sources reads, computed once:
        {"encoder_key_values": {"decoder_block_{i}": float [batch, 2, source_length,
        num_heads, head_size]}, "source_padding_mask": int32 [batch, source_length]}.
        Every tensor has the batch first, so beam search can repeat it per beam.

        Args:
          source_ids: int [batch, source_length].
          source_padding_mask: int/bool [batch, source_length], 1 = real token.
        """
        encoder_output = self.backbone.encode(source_ids, source_padding_mask,
                                              training=False)
        return {"encoder_key_values": self.backbone.cross_key_values(encoder_output),
                "source_padding_mask": ops.cast(source_padding_mask, "int32")}

    def init_cache(self, batch_size, max_length):
        """An empty self-attention KV cache for `batch_size` targets of up to
        `max_length` tokens (prompt included): a flat dict of tensors, batch first
        (see Seq2SeqTransformer.init_cache)."""
        return self.backbone.init_cache(batch_size, max_length)

    def generation_step(self, token_ids, cache, cache_index, positions, key_mask, context,
                        weights=None):
        """Logits for n new target tokens per row, and the cache with them written.

        Args:
          token_ids: int [batch, n], the tokens at cache slots cache_index ..
            cache_index + n - 1 (the left-padded prompts first, e.g. the start
            token alone, with cache_index 0; then one token per step).
          cache: from `init_cache` or the previous step.
          cache_index: int scalar, the slot of token_ids[:, 0], the same for all rows.
          positions: int [batch, n], the tokens' positions in their own rows.
          key_mask: int/bool [batch, max_length], 1 = the slot holds a real token
            (0 on the prompts' padding; slots not yet written may be 1).
          context: `encode_context(source_ids, source_padding_mask)`, rows matching
            token_ids' (repeated per beam in beam search).
          weights: None, or `decoding_weights()` (faster under XLA).
        Returns:
          (logits float32 [batch, n, vocab], the logits at slot s scoring the token
          for slot s + 1; the new cache).
        """
        sequence, cache = self.backbone.call_with_cache(token_ids, cache, cache_index,
                                                        positions, key_mask, context)
        return self.logits(sequence, weights), cache
