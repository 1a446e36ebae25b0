"""BERT (Devlin et al., 2019): the encoder backbone every BERT model is built on."""
import keras
from keras import ops

from kerasllm.layers import BertEmbedding, TransformerEncoderBlock
from kerasllm.models.backbone import Backbone
from kerasllm.models.bert.config import BertConfig


@keras.saving.register_keras_serializable(package="kerasllm")
class BertEncoder(Backbone):
    """Embeddings → `num_layers` encoder blocks → sequence and pooled outputs.

    Inputs: dict with
        token_ids: int [batch, seq]; segment_ids: int [batch, seq];
        padding_mask: int/bool [batch, seq], 1 = real token.
    Outputs: dict with
        sequence_output: float [batch, seq, hidden];
        pooled_output: float [batch, hidden], tanh(dense(first token)), the
            [CLS] summary used by sentence-level heads.

    `embedding`: another encoder's BertEmbedding to share (token, segment and
    position tables and their LayerNorm), as ELECTRA's generator shares its
    discriminator's; embeddings of another width than this encoder's hidden size
    pass through a learned projection (`embedding_projection`). The shared layer
    is a reference, not part of `get_config`: the model owning both encoders
    re-ties them when rebuilt.
    """

    config_class = BertConfig

    def __init__(self, config: BertConfig, embedding=None, **kwargs):
        super().__init__(config, **kwargs)
        config = self.config
        init = keras.initializers.TruncatedNormal(stddev=config.initializer_range)
        self.embedding = embedding if embedding is not None else BertEmbedding(
            config.vocab_size, config.hidden_size,
            max_sequence_length=config.max_sequence_length,
            type_vocab_size=config.type_vocab_size, dropout=config.dropout,
            layer_norm_epsilon=config.layer_norm_epsilon,
            initializer_range=config.initializer_range,
            dtype=self.dtype_policy, name="embedding")
        self.embedding_projection = (
            keras.layers.Dense(config.hidden_size, kernel_initializer=init,
                               dtype=self.dtype_policy, name="embedding_projection")
            if self.embedding.hidden_size != config.hidden_size else None)
        # One attribute per block, not a list: tf.train.Checkpoint does not follow
        # Keras' tracked lists, so a list of blocks would be missing from checkpoints.
        for i in range(config.num_layers):
            setattr(self, f"block_{i}", TransformerEncoderBlock(
                config.num_heads, config.intermediate_size, dropout=config.dropout,
                attention_dropout=config.attention_dropout, activation=config.activation,
                layer_norm_epsilon=config.layer_norm_epsilon, norm_first=config.norm_first,
                initializer_range=config.initializer_range,
                dtype=self.dtype_policy, name=f"block_{i}"))
        # Pre-LN stacks need a final LayerNorm; post-LN blocks end normalised.
        self.final_norm = (
            keras.layers.LayerNormalization(epsilon=config.layer_norm_epsilon,
                                            dtype=self.dtype_policy, name="final_norm")
            if config.norm_first else None)
        self.pooler = keras.layers.Dense(
            config.hidden_size, activation="tanh", kernel_initializer=init,
            dtype=self.dtype_policy, name="pooler")

    @property
    def blocks(self):
        """The encoder blocks, first to last."""
        return [getattr(self, f"block_{i}") for i in range(self.config.num_layers)]

    @property
    def token_embedding(self):
        return self.embedding.token_embedding

    def depth_layers(self):
        top = self.num_layers + 1
        return [(self.embedding, 0), (self.embedding_projection, 0),
                *((b, i + 1) for i, b in enumerate(self.blocks)),
                (self.final_norm, top), (self.pooler, top)]

    def dummy_inputs(self, seq_length):
        ids = ops.zeros((1, seq_length), "int32")
        return {"token_ids": ids, "segment_ids": ids, "padding_mask": ops.ones_like(ids)}

    def call(self, inputs, training=None):
        x = self._embed(inputs["token_ids"], inputs.get("segment_ids"), training)
        x = self._encode(x, inputs.get("padding_mask"), training)
        return {"sequence_output": x, "pooled_output": self.pooler(x[:, 0, :])}

    def two_stream(self, inputs, query_start, training=None):
        """XLNet's two-stream self-attention through this encoder's weights (see
        TransformerEncoderBlock): the content stream starts from the tokens'
        embeddings, the query stream from `query_start` in place of every token's
        (so it knows each position, never its token); each block's query stream
        attends to the content stream under `query_mask`.

        Args:
          inputs: dict with token_ids, segment_ids, padding_mask int [batch, seq],
            content_mask and query_mask int/bool [batch, seq, seq] (row = attending
            position, column = attended; see kerasllm.data.permutation_lm).
          query_start: float [hidden], the query stream's learned start vector.
        Returns:
          (content stream, query stream), float [batch, seq, hidden] each.
        """
        token_ids, segment_ids = inputs["token_ids"], inputs.get("segment_ids")
        content = self._embed(token_ids, segment_ids, training)
        query = self._embed(token_ids, segment_ids, training,
                            token_vectors=ops.reshape(query_start, (1, 1, -1)))
        return self._encode(content, inputs.get("padding_mask"), training, query=query,
                            attention_mask=inputs["content_mask"],
                            query_attention_mask=inputs["query_mask"])

    def _embed(self, token_ids, segment_ids, training, token_vectors=None):
        x = self.embedding(token_ids, segment_ids, training=training,
                           token_vectors=token_vectors)
        return x if self.embedding_projection is None else self.embedding_projection(x)

    def _encode(self, content, padding_mask, training, query=None, **masks):
        """The blocks (and the final norm) on the content stream's embeddings and,
        in two-stream mode, the query stream's; the outputs of each given stream."""
        for block in self.blocks:
            outputs = block(content, padding_mask=padding_mask, query_stream=query,
                            training=training, **masks)
            content, query = (outputs, None) if query is None else outputs
        if self.final_norm is not None:
            content = self.final_norm(content)
            query = None if query is None else self.final_norm(query)
        return content if query is None else (content, query)
