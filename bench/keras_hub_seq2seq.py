"""An encoder-decoder translator built from keras-hub 0.32's layers, at the size of a
kerasllm Seq2SeqConfig, behind the task interface kerasllm's training loop drives
(`build_for_inputs()`, `compute_loss_and_metrics(batch, training)`), with decoding by
keras-hub's own samplers over keras-hub's key/value caches.

    model = KerasHubSeq2SeqLM(registry.get("seq2seq_small")).build_for_inputs()
    token_ids = model.decode(source_ids, source_padding_mask, max_length=64,
                             sampler=keras_hub.samplers.BeamSampler(num_beams=4),
                             bos_id=2, eos_id=3, pad_id=0)

The layers (no presets, no downloads):
  keras_hub.layers.ReversibleEmbedding   one token table for source, target and the
                                         output projection (tied, as kerasllm's
                                         default; untied gives the projection its own
                                         table), scaled by sqrt(hidden) as kerasllm does
  keras_hub.layers.SinePositionEncoding  sinusoidal positions (kerasllm's default;
                                         PositionEmbedding for "learned")
  keras_hub.layers.TransformerEncoder    x num_encoder_layers
  keras_hub.layers.TransformerDecoder    x num_decoder_layers, with cross-attention
Same hidden size, layers, heads, FFN width, activation, norm position and epsilon,
vocabulary, residual and embedding dropout, label smoothing and initializers
(truncated normal `initializer_range` for projections, normal hidden ** -0.5 for the
token table) as kerasllm's Seq2SeqLM of the same config; bench/seq2seq_throughput.py
prints both trainable-weight counts.

Where keras-hub's layers differ and the baseline adapts them:
  * keras-hub applies its one `dropout` rate to the attention probabilities too;
    kerasllm's configs have attention_dropout 0.0, so the attention layers' rate is
    set to config.attention_dropout after they are built.
  * keras-hub's SinePositionEncoding interleaves sine and cosine over the hidden
    dimensions (kerasllm's sinusoids may order them differently): the same
    information in another order, irrelevant to a model trained from scratch.
  * TokenAndPositionEmbedding is not used: it cannot scale the token embeddings,
    nor tie them to the output projection.

Decoding follows keras-hub's BartSeq2SeqLM.generate_step: the encoder runs once;
every decoder layer has a self-attention cache [B, 2, max_length, heads, head_size]
and a cross-attention cache [B, 2, source_length, heads, head_size], stacked over
the layers; the first call fills the cross-attention caches (update index 0), later
calls only read them (update index None). As in BART, the encoder output, its mask
and the cross-attention caches ride along in the sampler's `cache` (a BeamSampler
repeats them per beam and gathers them with the beams at every step). Unlike
BartSeq2SeqLM, which seeds the caches with a pass over the whole padded target, the
seeding pass here reads the start token alone.
"""
import keras
import keras_hub
import tensorflow as tf
from keras import ops

from kerasllm.models.losses import masked_mean


def keras_label_smoothed_cross_entropy(targets, logits, smoothing):
    """(smoothed, nll) float32 [...]: kerasllm's sparse_cross_entropy as keras' own
    losses compute it (keras-hub's seq2seq models train with keras'
    SparseCategoricalCrossentropy, which has no label smoothing): the sparse
    cross-entropy, mixed with the cross-entropy against the uniform distribution."""
    logits = ops.cast(logits, "float32")
    nll = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    uniform = ops.logsumexp(logits, axis=-1) - ops.mean(logits, axis=-1)
    return (1.0 - smoothing) * nll + smoothing * uniform, nll


class KerasHubSeq2SeqLM(keras.Model):
    """keras-hub TransformerEncoder/TransformerDecoder translator with kerasllm
    Seq2SeqLM's training interface.

    Inputs and the loss are Seq2SeqLM's: a batch dict of source_ids,
    source_padding_mask, target_ids, target_padding_mask (int [batch, length]);
    `call` returns {"logits": float32 [batch, target_length, vocab]};
    compute_loss_and_metrics feeds target_ids[:, :-1] and scores target_ids[:, 1:]
    with config.label_smoothing (loss), accuracy and perplexity.
    """

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        if config.norm_position not in ("post", "pre"):
            raise ValueError(f"norm_position {config.norm_position!r}")
        init = keras.initializers.TruncatedNormal(stddev=config.initializer_range)
        self.token_embedding = keras_hub.layers.ReversibleEmbedding(
            config.vocab_size, config.hidden_size, tie_weights=config.tie_embeddings,
            embeddings_initializer=keras.initializers.RandomNormal(
                stddev=config.hidden_size ** -0.5),
            reverse_dtype="float32", name="token_embedding")
        self.position_embedding = (
            keras_hub.layers.SinePositionEncoding(name="position_embedding")
            if config.position_embedding == "sinusoidal" else
            keras_hub.layers.PositionEmbedding(config.max_sequence_length, initializer=init,
                                               name="position_embedding"))
        self.embedding_dropout = keras.layers.Dropout(config.dropout, name="embedding_dropout")
        common = dict(intermediate_dim=config.intermediate_size, num_heads=config.num_heads,
                      dropout=config.dropout, activation=config.activation,
                      layer_norm_epsilon=config.norm_epsilon, kernel_initializer=init,
                      normalize_first=config.norm_position == "pre")
        # One attribute per layer (tf.train.Checkpoint does not follow Keras' lists).
        for i in range(config.num_encoder_layers):
            setattr(self, f"encoder_layer_{i}", keras_hub.layers.TransformerEncoder(
                name=f"encoder_layer_{i}", **common))
        for i in range(config.num_decoder_layers):
            setattr(self, f"decoder_layer_{i}", keras_hub.layers.TransformerDecoder(
                name=f"decoder_layer_{i}", **common))
        pre = config.norm_position == "pre"
        self.encoder_final_norm = (keras.layers.LayerNormalization(
            epsilon=config.norm_epsilon, name="encoder_final_norm") if pre else None)
        self.decoder_final_norm = (keras.layers.LayerNormalization(
            epsilon=config.norm_epsilon, name="decoder_final_norm") if pre else None)

    @property
    def encoder_layers(self):
        return [getattr(self, f"encoder_layer_{i}")
                for i in range(self.config.num_encoder_layers)]

    @property
    def decoder_layers(self):
        return [getattr(self, f"decoder_layer_{i}")
                for i in range(self.config.num_decoder_layers)]

    # --- building ----------------------------------------------------------------------

    def dummy_inputs(self, seq_length):
        ids = ops.zeros((1, seq_length), "int32")
        return {"source_ids": ids, "source_padding_mask": ops.ones_like(ids),
                "target_ids": ids, "target_padding_mask": ops.ones_like(ids)}

    def build_for_inputs(self, seq_length=8):
        """Creates every weight, then sets the attention dropout to the config's."""
        self(self.dummy_inputs(seq_length))
        attentions = [layer._self_attention_layer for layer in self.encoder_layers]
        for layer in self.decoder_layers:
            attentions += [layer._self_attention_layer, layer._cross_attention_layer]
        for attention in attentions:
            # keras.layers.MultiHeadAttention skips its dropout when _dropout is 0.
            attention._dropout = self.config.attention_dropout
            attention._dropout_layer.rate = self.config.attention_dropout
        return self

    # --- forward -----------------------------------------------------------------------

    def embed(self, token_ids, start_index=0, training=None):
        """float [batch, seq, hidden] for int [batch, seq] tokens at positions
        start_index, start_index + 1, ... (right-padded rows)."""
        x = self.token_embedding(token_ids) * ops.cast(self.config.hidden_size ** 0.5,
                                                       self.compute_dtype)
        x = x + self.position_embedding(x, start_index=start_index)
        return self.embedding_dropout(x, training=training)

    def encode(self, source_ids, source_padding_mask, training=None):
        x = self.embed(source_ids, training=training)
        for layer in self.encoder_layers:
            x = layer(x, padding_mask=source_padding_mask, training=training)
        return x if self.encoder_final_norm is None else self.encoder_final_norm(x)

    def logits(self, sequence_output):
        return ops.cast(self.token_embedding(sequence_output, reverse=True), "float32")

    def call(self, inputs, training=None):
        encoder_output = self.encode(inputs["source_ids"], inputs["source_padding_mask"],
                                     training=training)
        x = self.embed(inputs["target_ids"], training=training)
        for layer in self.decoder_layers:
            x = layer(x, encoder_output, decoder_padding_mask=inputs["target_padding_mask"],
                      encoder_padding_mask=inputs["source_padding_mask"], training=training)
        if self.decoder_final_norm is not None:
            x = self.decoder_final_norm(x)
        return {"logits": self.logits(x)}

    def compute_loss_and_metrics(self, batch, training=False):
        """kerasllm Seq2SeqLM's loss and metrics (see its docstring), by keras' losses."""
        target_ids, target_mask = batch["target_ids"], batch["target_padding_mask"]
        logits = self({**batch, "target_ids": target_ids[:, :-1],
                       "target_padding_mask": target_mask[:, :-1]}, training=training)["logits"]
        labels = target_ids[:, 1:]
        real = ops.cast(target_mask, "float32")
        weights = real[:, 1:] * real[:, :-1]
        smoothed, nll = keras_label_smoothed_cross_entropy(labels, logits,
                                                           self.config.label_smoothing)
        correct = ops.equal(ops.argmax(logits, -1), ops.cast(labels, "int64"))
        return masked_mean(smoothed, weights), {
            "accuracy": masked_mean(correct, weights),
            "perplexity": ops.exp(masked_mean(nll, weights))}

    # --- cached decoding (keras-hub's BartSeq2SeqLM pattern) -----------------------------

    def call_decoder_with_cache(self, token_ids, encoder_output, source_padding_mask,
                                self_cache, self_index, cross_cache, cross_index):
        """(logits float32 [B, n, vocab], self_cache, cross_cache): the decoder over n
        tokens at slots self_index .. + n - 1. Caches are [B, layers, 2, length, heads,
        head_size]; cross_index 0 fills the cross-attention caches, None reads them."""
        x = self.embed(token_ids, start_index=self_index, training=False)
        new_self, new_cross = [], []
        for i, layer in enumerate(self.decoder_layers):
            x, layer_self, layer_cross = layer(
                x, encoder_output, encoder_padding_mask=source_padding_mask,
                self_attention_cache=self_cache[:, i], self_attention_cache_update_index=self_index,
                cross_attention_cache=cross_cache[:, i],
                cross_attention_cache_update_index=cross_index, training=False)
            new_self.append(layer_self)
            new_cross.append(layer_cross)
        if self.decoder_final_norm is not None:
            x = self.decoder_final_norm(x)
        self_cache = ops.stack(new_self, axis=1)
        if cross_index is not None:
            cross_cache = ops.stack(new_cross, axis=1)
        return self.logits(x), self_cache, cross_cache

    def decode(self, source_ids, source_padding_mask, *, max_length, sampler, bos_id, eos_id,
               pad_id=0, source_in_cache=True):
        """int32 [B, max_length]: <s> then the sampler's tokens (greedy, beam, ...), the
        keras-hub sampler stopping once every row has produced </s>; whatever follows
        a row's first </s> is the sampler's filler, cut it off (see `strip`).

        source_in_cache=True passes the encoder output, its mask and the
        cross-attention caches through the sampler's cache, as BartSeq2SeqLM does
        (a BeamSampler then reorders them with the beams at every step);
        False repeats them per beam once, here, and the step reads them from its
        closure (only the self-attention cache goes through the sampler): a
        variant that isolates what the former costs."""
        config = self.config
        source_padding_mask = ops.cast(source_padding_mask, "bool")
        encoder_output = self.encode(source_ids, source_padding_mask, training=False)
        batch_size = ops.shape(source_ids)[0]
        prompt = ops.concatenate([ops.full((batch_size, 1), bos_id, "int32"),
                                  ops.full((batch_size, max_length - 1), pad_id, "int32")], 1)
        prompt_mask = ops.concatenate([ops.ones((batch_size, 1), "bool"),
                                       ops.zeros((batch_size, max_length - 1), "bool")], 1)
        layers, heads, size = config.num_decoder_layers, config.num_heads, config.head_size
        self_cache = ops.zeros((batch_size, layers, 2, max_length, heads, size),
                               self.compute_dtype)
        cross_cache = ops.zeros((batch_size, layers, 2, ops.shape(source_ids)[1], heads, size),
                                self.compute_dtype)
        # Seed: the start token's keys and values, and every layer's cross-attention
        # keys and values of the source.
        _, self_cache, cross_cache = self.call_decoder_with_cache(
            prompt[:, :1], encoder_output, source_padding_mask, self_cache, 0, cross_cache, 0)

        if source_in_cache:
            def next(prompt, cache, index):
                self_cache, encoder_output, source_padding_mask, cross_cache = cache
                cache_index = index - 1
                token = ops.slice(prompt, [0, cache_index], [ops.shape(prompt)[0], 1])
                logits, self_cache, _ = self.call_decoder_with_cache(
                    token, encoder_output, source_padding_mask, self_cache, cache_index,
                    cross_cache, None)
                return (ops.squeeze(logits, 1), None,
                        (self_cache, encoder_output, source_padding_mask, cross_cache))

            return sampler(next=next, prompt=prompt,
                           cache=(self_cache, encoder_output, source_padding_mask,
                                  cross_cache),
                           index=1, mask=prompt_mask, stop_token_ids=(eos_id,), model=self)

        beams = getattr(sampler, "num_beams", 1)
        fixed = [ops.repeat(x, beams, axis=0)
                 for x in (encoder_output, source_padding_mask, cross_cache)]

        def next_reading_closure(prompt, self_cache, index):
            cache_index = index - 1
            token = ops.slice(prompt, [0, cache_index], [ops.shape(prompt)[0], 1])
            logits, self_cache, _ = self.call_decoder_with_cache(
                token, fixed[0], fixed[1], self_cache, cache_index, fixed[2], None)
            return ops.squeeze(logits, 1), None, self_cache

        return sampler(next=next_reading_closure, prompt=prompt, cache=self_cache, index=1,
                       mask=prompt_mask, stop_token_ids=(eos_id,), model=self)


# --- decode()'s inputs and outputs -----------------------------------------------------

def source_batch(tokenizer, texts, max_length):
    """(source_ids int32 [N, S], mask int32 [N, S]): "x </s>" as the trainer and the
    export frame sources, padded to the longest."""
    ids = tf.cast(tokenizer.tokenize(tf.constant(texts))[:, :max_length - 1], tf.int32)
    ids = tf.concat([ids, tf.fill([ids.nrows(), 1], tf.cast(tokenizer.eos_id, tf.int32))], 1)
    dense = ids.to_tensor(tokenizer.pad_id)
    mask = tf.sequence_mask(ids.row_lengths(), tf.shape(dense)[1], tf.int32)
    return dense, mask


def strip(token_ids, eos_id):
    """list of lists of int: each row of decode()'s output without its <s>, cut before
    its first </s>."""
    rows = []
    for row in tf.convert_to_tensor(token_ids).numpy().tolist():
        row = row[1:]
        rows.append(row[:row.index(eos_id)] if eos_id in row else row)
    return rows
