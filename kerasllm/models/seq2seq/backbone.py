"""The seq2seq family's backbone: a Transformer encoder over the source and a decoder
over the target that cross-attends to it."""
import keras
from keras import ops

from kerasllm.layers import (SinusoidalPositionEmbedding, TransformerDecoderBlock,
                             TransformerEncoderBlock, empty_cache)
from kerasllm.models.backbone import Backbone
from kerasllm.models.gpt.backbone import positions_from_padding_mask
from kerasllm.models.seq2seq.config import Seq2SeqConfig


@keras.saving.register_keras_serializable(package="kerasllm")
class Seq2SeqTransformer(Backbone):
    """The encoder-decoder Transformer (Vaswani et al., 2017).

    Both stacks read token embeddings scaled by sqrt(hidden_size) plus position
    embeddings, then dropout. The encoder is `num_encoder_layers`
    TransformerEncoderBlocks; the decoder `num_decoder_layers` causal
    TransformerDecoderBlocks with cross-attention to the encoder's output. Post-LN
    (the paper's) or pre-LN blocks, the latter with a final norm on each stack.

    One token table (`token_embedding`, [vocab, hidden]) embeds source and target
    tokens; it is public so that the output projection can be tied to it. Its
    initial weights have standard deviation hidden_size ** -0.5, so that the
    scaled embeddings start at unit variance, as large as the sinusoids.

    Inputs: dict with
        source_ids: int [batch, source_length];
        source_padding_mask: int/bool [batch, source_length], 1 = real token;
        target_ids: int [batch, target_length], the decoder's inputs (the target
            shifted right: a start token, then all but its last token);
        target_padding_mask: int/bool [batch, target_length].
      Rows may be right- or left-padded: positions count real tokens only.
    Outputs: dict with
        sequence_output: float [batch, target_length, hidden], the decoder's output
            (after the final norm);
        encoder_output: float [batch, source_length, hidden].

    Incremental decoding: `encode`, `cross_key_values`, `init_cache` and
    `call_with_cache` (the path a generation loop takes; see their docstrings).
    """

    config_class = Seq2SeqConfig

    def __init__(self, config: Seq2SeqConfig, **kwargs):
        super().__init__(config, **kwargs)
        config = self.config
        dtype = self.dtype_policy
        init = keras.initializers.TruncatedNormal(stddev=config.initializer_range)
        self.token_embedding = keras.layers.Embedding(
            config.vocab_size, config.hidden_size,
            embeddings_initializer=keras.initializers.RandomNormal(
                stddev=config.hidden_size ** -0.5),
            dtype=dtype, name="token_embedding")
        # Shared by encoder and decoder: a position means the same in either.
        if config.position_embedding == "learned":
            self.position_embedding = keras.layers.Embedding(
                config.max_sequence_length, config.hidden_size,
                embeddings_initializer=init, dtype=dtype, name="position_embedding")
        else:
            self.position_embedding = SinusoidalPositionEmbedding(
                config.hidden_size, dtype=dtype, name="position_embedding")
        self.embedding_dropout = keras.layers.Dropout(
            config.dropout, dtype=dtype, name="embedding_dropout")
        pre_norm = config.norm_position == "pre"
        # One attribute per block, not a list: tf.train.Checkpoint does not follow
        # Keras' tracked lists, so a list of blocks would be missing from checkpoints.
        for i in range(config.num_encoder_layers):
            setattr(self, f"encoder_block_{i}", TransformerEncoderBlock(
                config.num_heads, config.intermediate_size, dropout=config.dropout,
                attention_dropout=config.attention_dropout, activation=config.activation,
                layer_norm_epsilon=config.norm_epsilon, norm_first=pre_norm,
                initializer_range=config.initializer_range, dtype=dtype,
                name=f"encoder_block_{i}"))
        for i in range(config.num_decoder_layers):
            setattr(self, f"decoder_block_{i}", TransformerDecoderBlock(
                config.num_heads, config.intermediate_size, norm="layer_norm",
                norm_epsilon=config.norm_epsilon, feed_forward="gelu_mlp",
                activation=config.activation, dropout=config.dropout,
                attention_dropout=config.attention_dropout,
                initializer_range=config.initializer_range, cross_attention=True,
                norm_position=config.norm_position, dtype=dtype,
                name=f"decoder_block_{i}"))
        # Post-LN blocks end in a norm already.
        self.encoder_final_norm, self.decoder_final_norm = (
            (keras.layers.LayerNormalization(epsilon=config.norm_epsilon, dtype=dtype,
                                             name=f"{stack}_final_norm")
             for stack in ("encoder", "decoder")) if pre_norm else (None, None))

    @property
    def encoder_blocks(self):
        """The encoder blocks, first to last."""
        return [getattr(self, f"encoder_block_{i}")
                for i in range(self.config.num_encoder_layers)]

    @property
    def decoder_blocks(self):
        """The decoder blocks, first to last."""
        return [getattr(self, f"decoder_block_{i}")
                for i in range(self.config.num_decoder_layers)]

    def depth_layers(self):
        """The encoder's blocks at depths 1 .. E (its final norm at E), the decoder's
        above them at E + 1 .. E + D: every decoder block reads the encoder's top."""
        encoder_layers = self.config.num_encoder_layers
        return [(self.token_embedding, 0), (self.position_embedding, 0),
                *((b, i + 1) for i, b in enumerate(self.encoder_blocks)),
                (self.encoder_final_norm, encoder_layers),
                *((b, encoder_layers + i + 1) for i, b in enumerate(self.decoder_blocks)),
                (self.decoder_final_norm, self.num_layers + 1)]

    def dummy_inputs(self, seq_length):
        ids = ops.zeros((1, seq_length), "int32")
        return {"source_ids": ids, "source_padding_mask": ops.ones_like(ids),
                "target_ids": ids, "target_padding_mask": ops.ones_like(ids)}

    def embed(self, token_ids, positions, training=None):
        """float [batch, seq, hidden]: a stack's input for int [batch, seq] tokens at
        int [batch, seq] positions."""
        x = self.token_embedding(token_ids) * self.config.hidden_size ** 0.5
        x = x + self.position_embedding(positions)
        return self.embedding_dropout(x, training=training)

    def encode(self, source_ids, source_padding_mask, training=None):
        """float [batch, source_length, hidden]: the encoder's output for int
        [batch, source_length] source_ids and their padding mask (1 = real)."""
        x = self.embed(source_ids, positions_from_padding_mask(source_padding_mask),
                       training=training)
        for block in self.encoder_blocks:
            x = block(x, padding_mask=source_padding_mask, training=training)
        return x if self.encoder_final_norm is None else self.encoder_final_norm(x)

    def decode(self, target_ids, target_padding_mask, encoder_output, source_padding_mask,
               training=None):
        """float [batch, target_length, hidden]: the decoder's output for int
        [batch, target_length] target_ids (its inputs) and their padding mask,
        cross-attending to `encoder_output` [batch, source_length, hidden] where
        `source_padding_mask` is 1."""
        positions = positions_from_padding_mask(target_padding_mask)
        x = self.embed(target_ids, positions, training=training)
        for block in self.decoder_blocks:
            x = block(x, padding_mask=target_padding_mask, encoder_output=encoder_output,
                      encoder_padding_mask=source_padding_mask, training=training)
        return x if self.decoder_final_norm is None else self.decoder_final_norm(x)

    def call(self, inputs, training=None):
        encoder_output = self.encode(inputs["source_ids"], inputs["source_padding_mask"],
                                     training=training)
        sequence_output = self.decode(
            inputs["target_ids"], inputs["target_padding_mask"], encoder_output,
            inputs["source_padding_mask"], training=training)
        return {"sequence_output": sequence_output, "encoder_output": encoder_output}

    def cross_key_values(self, encoder_output):
        """{"decoder_block_{i}": float [batch, 2, source_length, num_heads,
        head_size]}: every decoder block's cross-attention keys and values of
        `encoder_output`, computed once per source for all decoding steps."""
        return {f"decoder_block_{i}": block.cross_key_values(encoder_output)
                for i, block in enumerate(self.decoder_blocks)}

    def init_cache(self, batch_size, max_length):
        """The decoder's self-attention KV cache of `batch_size` targets of up to
        `max_length` tokens, empty: {"decoder_block_{i}": zeros [batch_size, 2,
        max_length, num_heads, head_size]} in the compute dtype (see
        kerasllm.layers.attention.empty_cache). Batch first, for beam search."""
        config = self.config
        return {f"decoder_block_{i}": empty_cache(batch_size, max_length, config.num_heads,
                                                  config.head_size, self.compute_dtype)
                for i in range(config.num_decoder_layers)}

    def call_with_cache(self, token_ids, cache, cache_index, positions, key_mask, context,
                        training=False):
        """Runs n new target tokens per row that occupy cache slots cache_index ..
        cache_index + n - 1, attending to themselves, to the slots before and to
        the source.

        Args:
          token_ids: int [batch, n], the new tokens (the same n for every row).
          cache: as from `init_cache(batch, max_length)` or an earlier call.
          cache_index: int scalar, the slot of the first new token, every row's.
          positions: int [batch, n], the new tokens' positions in their rows.
          key_mask: int/bool [batch, max_length], 1 = the slot holds (or will
            hold) a real token; the causal mask hides slots not yet written.
          context: {"encoder_key_values": `cross_key_values(encoder_output)`,
            "source_padding_mask": int [batch, source_length]}.
        Returns:
          (sequence_output float [batch, n, hidden], after the final norm; the new
          cache, the same structure with these tokens' keys and values written).
        """
        x = self.embed(token_ids, positions, training=training)
        new_cache = {}
        for i, block in enumerate(self.decoder_blocks):
            name = f"decoder_block_{i}"
            x, new_cache[name] = block(
                x, padding_mask=key_mask, positions=positions, cache=cache[name],
                cache_update_index=cache_index,
                encoder_key_values=context["encoder_key_values"][name],
                encoder_padding_mask=context["source_padding_mask"], training=training)
        return (x if self.decoder_final_norm is None else self.decoder_final_norm(x),
                new_cache)
