"""An encoder-decoder Transformer as a conditional language model (e.g. a translator):
next-target-token logits, the label-smoothed loss and decoding steps."""
import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kerasllm.data.parallel_text import framed_pair_ids
from kerasllm.errors import DataError
from kerasllm.export import seq2seq_signatures
from kerasllm.models.language_model import LanguageModelTask
from kerasllm.models.losses import masked_mean, sparse_cross_entropy
from kerasllm.raw_text import per_row, text_batch, unbatched
from kerasllm.models.seq2seq.backbone import Seq2SeqTransformer
from kerasllm.serving.batching import DECODING

# Tokens of a source or target, end tokens included (train_seq2seq's default).
DEFAULT_MAX_LENGTH = 128


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

    With a tokenizer, on raw text, through the functions its export serves
    (kerasllm.export.seq2seq_signatures; beam search compiled with XLA in-process
    where that is faster):
        model.translate("In the beginning", beam_size=4)
        model.score(sources, targets)
        model.fit((sources, targets))   # "x </s>" -> "<s> y </s>"
        model.export("saved_models/my_translator")
    Sources and targets keep their first max_source_length / max_target_length
    tokens, end tokens included.
    """

    backbone_class = Seq2SeqTransformer

    def __init__(self, backbone, tokenizer=None, max_source_length=DEFAULT_MAX_LENGTH,
                 max_target_length=DEFAULT_MAX_LENGTH, **kwargs):
        super().__init__(backbone, tokenizer=tokenizer, **kwargs)
        self.max_source_length = int(max_source_length)
        self.max_target_length = int(max_target_length)

    def task_config(self):
        return {"max_source_length": self.max_source_length,
                "max_target_length": self.max_target_length}

    def preprocess(self, x, y=None):
        """(sources string [B], targets string [B]) -> the training batch: source_ids
        "x </s>", target_ids "<s> y </s>" and their padding masks, each padded to
        the batch's longest (see the class docstring)."""
        if y is None:
            raise DataError("a translator trains on (sources, targets) pairs; pass both")
        tokenizer = self.needs_tokenizer("fit")
        framed = framed_pair_ids(tokenizer.tokenize(x), tokenizer.tokenize(y),
                                 self.max_source_length, self.max_target_length,
                                 tokenizer.bos_id, tokenizer.eos_id)
        batch = {}
        for side in ("source", "target"):
            ids = framed[f"{side}_ids"]
            batch[f"{side}_ids"] = ids.to_tensor(tokenizer.pad_id)
            batch[f"{side}_padding_mask"] = tf.sequence_mask(
                ids.row_lengths(), tf.shape(batch[f"{side}_ids"])[1], tf.int32)
        return batch

    def serving_signatures(self, max_beam_size=4, beam_size=4, length_penalty_alpha=0.6,
                           compiled=False):
        """seq2seq_signatures of this model at its length limits."""
        return seq2seq_signatures.seq2seq_signatures(
            self, self.needs_tokenizer("translate"), max_source_length=self.max_source_length,
            max_target_length=self.max_target_length, max_beam_size=max_beam_size,
            beam_size=beam_size, length_penalty_alpha=length_penalty_alpha,
            compiled=compiled)

    def export_options(self):
        return {"warmup_inputs": seq2seq_signatures.warmup_inputs(), "batching": DECODING}

    def translate(self, texts, beam_size=4, length_penalty=0.6, max_length=0,
                  return_details=False, jit_compile=None):
        """The best translation of each text (a string, or a list), by beam search.

        beam_size, length_penalty (GNMT alpha) and max_length (target tokens, 0 = twice
        the source's plus 10) are one value for every text or one per text. With
        return_details, a dict: translation, score, and the n-best translations
        and scores (best first; "" and -inf past a text's own beam size).
        jit_compile: compile the beam search with XLA (None: where it is faster, see
        decoding_compiled).
        """
        texts, single = text_batch(texts)
        rows = int(texts.shape[0])
        if not rows:
            return {} if return_details else []
        outputs = self.run_text_function(
            "translate_with_options",
            {"text": texts, "beam_size": per_row(beam_size, rows, tf.int32, "beam_size"),
             "length_penalty": per_row(length_penalty, rows, tf.float32, "length_penalty"),
             "max_length": per_row(max_length, rows, tf.int32, "max_length")}, False,
            max_beam_size=max(int(np.max(beam_size)), 1),
            compiled=self.decoding_compiled(jit_compile))
        return unbatched(outputs if return_details else outputs["translation"], single)

    def score(self, sources, targets):
        """log p(target | source) of each pair (strings, or lists): {"log_probability",
        "num_tokens"} (the target's tokens and </s>)."""
        sources, single = text_batch(sources, "sources")
        targets, _ = text_batch(targets, "targets")
        if sources.shape != targets.shape:
            raise DataError(f"{sources.shape[0]} sources but {targets.shape[0]} targets")
        return self.run_text_function("score", {"source": sources, "target": targets},
                                      single)

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
