"""The GPT family's backbone: a stack of causal decoder blocks over token embeddings."""
import keras
import tensorflow as tf
from keras import ops

from kerasllm.layers import TransformerDecoderBlock, empty_cache, normalization
from kerasllm.models.backbone import Backbone
from kerasllm.models.gpt.config import GptConfig


def positions_from_padding_mask(padding_mask):
    """int32 [batch, seq]: each real token's index among its row's real tokens, the
    position a left-padded row must give its tokens (its first real token is at 0);
    padding gets 0 too.

    Args:
      padding_mask: int/bool [batch, seq], 1 = real token.
    """
    return ops.maximum(ops.cumsum(ops.cast(padding_mask, "int32"), axis=1) - 1, 0)


@keras.saving.register_keras_serializable(package="kerasllm")
class GptDecoder(Backbone):
    """Token embeddings (+ learned position embeddings) -> `num_layers` pre-LN causal
    decoder blocks -> a final norm. GPT-2 or Llama style, as its GptConfig says.

    Inputs: dict with
        token_ids: int [batch, seq];
        padding_mask: int/bool [batch, seq], 1 = real token; rows may be left- or
            right-padded; optional (no padding);
        positions: int [batch, seq], optional; defaults to
            `positions_from_padding_mask(padding_mask)`, so a left-padded row's first
            real token is at position 0.
    Outputs: dict with
        sequence_output: float [batch, seq, hidden], after the final norm.

    The token table is public (`token_embedding`, [vocab, hidden]) so that the output
    projection can be tied to it.

    Incremental decoding: `init_cache` and `call_with_cache` (the path a generation
    loop takes; see their docstrings).
    """

    config_class = GptConfig

    def __init__(self, config: GptConfig, **kwargs):
        super().__init__(config, **kwargs)
        # Gradient checkpointing in training (set before the first call): less memory
        # for a third more compute. Dropout masks would differ in the rerun, so it is
        # for models trained without dropout.
        self.rematerialize = False
        config = self.config
        init = keras.initializers.TruncatedNormal(stddev=config.initializer_range)
        self.token_embedding = keras.layers.Embedding(
            config.vocab_size, config.hidden_size, embeddings_initializer=init,
            dtype=self.dtype_policy, name="token_embedding")
        self.position_embedding = (
            keras.layers.Embedding(config.max_sequence_length, config.hidden_size,
                                   embeddings_initializer=init, dtype=self.dtype_policy,
                                   name="position_embedding")
            if config.position_embedding == "learned" else None)
        self.embedding_dropout = keras.layers.Dropout(
            config.dropout, dtype=self.dtype_policy, name="embedding_dropout")
        rotary = config.rope_theta if config.position_embedding == "rotary" else None
        # One attribute per block, not a list: tf.train.Checkpoint does not follow
        # Keras' tracked lists, so a list of blocks would be missing from checkpoints.
        for i in range(config.num_layers):
            setattr(self, f"block_{i}", TransformerDecoderBlock(
                config.num_heads, config.intermediate_size,
                num_key_value_heads=config.num_key_value_heads, norm=config.norm,
                norm_epsilon=config.norm_epsilon, feed_forward=config.feed_forward,
                use_bias=config.use_bias, rotary_max_wavelength=rotary,
                dropout=config.dropout, attention_dropout=config.attention_dropout,
                initializer_range=config.initializer_range,
                dtype=self.dtype_policy, name=f"block_{i}"))
        self.final_norm = normalization(config.norm, config.norm_epsilon,
                                        dtype=self.dtype_policy, name="final_norm")

    @property
    def blocks(self):
        """The decoder blocks, first to last."""
        return [getattr(self, f"block_{i}") for i in range(self.config.num_layers)]

    def depth_layers(self):
        return [(self.token_embedding, 0), (self.position_embedding, 0),
                *((b, i + 1) for i, b in enumerate(self.blocks)),
                (self.final_norm, self.num_layers + 1)]

    def dummy_inputs(self, seq_length):
        ids = ops.zeros((1, seq_length), "int32")
        return {"token_ids": ids, "padding_mask": ops.ones_like(ids)}

    def embed(self, token_ids, positions, training=None):
        """float [batch, seq, hidden]: the blocks' input for int [batch, seq] tokens
        at int [batch, seq] positions."""
        x = self.token_embedding(token_ids)
        if self.position_embedding is not None:
            x = x + self.position_embedding(positions)
        return self.embedding_dropout(x, training=training)

    def call(self, inputs, training=None):
        token_ids = inputs["token_ids"]
        padding_mask = inputs.get("padding_mask")
        positions = inputs.get("positions")
        if positions is None:
            positions = positions_from_padding_mask(
                ops.ones_like(token_ids) if padding_mask is None else padding_mask)
        x = self.embed(token_ids, positions, training=training)
        for block in self.blocks:
            def run_block(x, block=block):
                return block(x, padding_mask=padding_mask, positions=positions,
                             training=training)
            # Rematerialised, a block keeps only its input for the backward pass and
            # runs again there: activation memory of one block instead of all.
            x = (tf.recompute_grad(run_block) if training and self.rematerialize
                 else run_block)(x)
        return {"sequence_output": self.final_norm(x)}

    def init_cache(self, batch_size, max_length):
        """The KV cache of `batch_size` sequences of up to `max_length` tokens, empty:
        a dict {"block_{i}": zeros [batch_size, 2, max_length, num_key_value_heads,
        head_size]} in the compute dtype (see kerasllm.layers.attention.empty_cache).
        Every tensor's first axis is the batch: beam search reorders the cache with
        `tf.nest.map_structure(lambda t: tf.gather(t, rows, axis=0), cache)`."""
        config = self.config
        return {f"block_{i}": empty_cache(batch_size, max_length, config.num_key_value_heads,
                                          config.head_size, self.compute_dtype)
                for i in range(config.num_layers)}

    def call_with_cache(self, token_ids, cache, cache_index, positions, key_mask,
                        training=False):
        """Runs n new tokens per row that occupy cache slots cache_index ..
        cache_index + n - 1, attending to themselves and to the slots before.

        Args:
          token_ids: int [batch, n], the new tokens (n = prompt length for the first
            call, 1 per step afterwards; the same n for every row).
          cache: as from `init_cache(batch, max_length)` or an earlier call.
          cache_index: int scalar (a Python int or a tensor), the slot of the first
            new token; every row writes to the same slots.
          positions: int [batch, n], the new tokens' positions, per row: for a
            left-padded prompt, `positions_from_padding_mask(prompt_mask)`, then each
            row's count of real tokens so far.
          key_mask: int/bool [batch, max_length], 1 = the slot holds (or will hold) a
            real token; 0 for the prompt's padding. Slots after the new tokens may be
            1 already: the causal mask hides them until they are written.
        Returns:
          (sequence_output float [batch, n, hidden], after the final norm; the new
          cache, the same structure with these tokens' keys and values written).
        """
        x = self.embed(token_ids, positions, training=training)
        new_cache = {}
        for i, block in enumerate(self.blocks):
            x, new_cache[f"block_{i}"] = block(
                x, padding_mask=key_mask, positions=positions, cache=cache[f"block_{i}"],
                cache_update_index=cache_index, training=training)
        return self.final_norm(x), new_cache
