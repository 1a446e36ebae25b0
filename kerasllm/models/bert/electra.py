"""ELECTRA pretraining (Clark et al., 2020): replaced-token detection. A small
masked-LM generator fills the masked positions with tokens drawn from its softmax,
and the BERT encoder being pretrained, the discriminator, learns which tokens of
the sequence it is shown were replaced; it learns from every token, not only the
masked 15%."""
import keras
import tensorflow as tf
from keras import ops

from kerasllm.errors import ConfigError
from kerasllm.export.bert_signatures import bert_signatures
from kerasllm.layers import ReplacedTokenHead
from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.bert.pretrainer import tied_lm_head
from kerasllm.models.bert.text_task import BertTextTask
from kerasllm.models.losses import masked_mean, sparse_cross_entropy

# The paper's settings: a generator a quarter of the discriminator's width (1/4
# to 1/2 of it trains the best discriminators), whose loss the discriminator's,
# a per-token binary cross-entropy and so much smaller, outweighs 50 times.
DEFAULT_GENERATOR_SIZE = 0.25
DEFAULT_DISCRIMINATOR_WEIGHT = 50.0


def generator_config(config, generator_size):
    """The generator's BertConfig: the discriminator's `config` with its hidden
    size, heads and intermediate size scaled by `generator_size` (rounded; one
    head at least), as deep as the discriminator, as the paper's generators are.

    Raises:
      ConfigError: generator_size is not in (0, 1], or the scaled hidden size
        does not split over the scaled heads.
    """
    if not 0.0 < generator_size <= 1.0:
        raise ConfigError(f"generator_size is the generator's fraction of the "
                          f"discriminator's width, in (0, 1]; got {generator_size}")
    hidden = round(config.hidden_size * generator_size)
    heads = max(1, round(config.num_heads * generator_size))
    if hidden < heads or hidden % heads:
        raise ConfigError(
            f"generator_size={generator_size} gives the generator a hidden size of "
            f"{hidden} over {heads} heads, which does not split evenly; choose a size "
            f"that keeps hidden_size ({config.hidden_size}) / num_heads "
            f"({config.num_heads}) whole, e.g. 0.25 or 0.5")
    return config.replace(hidden_size=hidden, num_heads=heads,
                          intermediate_size=max(1, round(config.intermediate_size
                                                         * generator_size)))


def put_tokens(token_ids, positions, values, weights):
    """int [B, S]: `token_ids` with `values` int [B, P] written at `positions` int
    [B, P] where `weights` [B, P] > 0; predictions of weight 0 (padding) change
    nothing. The real positions of a row are distinct, as masking draws them."""
    token_ids = tf.convert_to_tensor(token_ids)
    positions = tf.cast(positions, tf.int32)
    current = tf.gather(token_ids, positions, batch_dims=1)
    # Written as differences added, which are 0 for the padding predictions: these
    # point at position 0 too, and an update of theirs would race a real one there.
    change = tf.where(tf.convert_to_tensor(weights) > 0,
                      tf.cast(values, token_ids.dtype) - current, tf.zeros_like(current))
    rows = tf.broadcast_to(tf.range(tf.shape(positions)[0])[:, None], tf.shape(positions))
    return tf.tensor_scatter_nd_add(token_ids, tf.stack([rows, positions], -1), change)


def replaced_token_labels(original_ids, seen_ids, padding_mask):
    """int32 [B, S], the discriminator's targets: 1 where the token it sees
    (`seen_ids`) differs from the original, 0 elsewhere, and 0 at padding. A
    sample equal to the original token is not a replacement."""
    replaced = tf.logical_and(tf.not_equal(original_ids, tf.cast(seen_ids, original_ids.dtype)),
                              tf.cast(padding_mask, tf.bool))
    return tf.cast(replaced, tf.int32)


@keras.saving.register_keras_serializable(package="kerasllm")
class ElectraPretrainer(BertTextTask):
    """ELECTRA pretraining of a BertEncoder, the discriminator (`backbone`: what
    fine-tuning and export take from a run, as from BertPretrainer's).

    Inputs: a batch dict as kerasllm.data.bert_pretraining builds it (any
    next_sentence_labels are not used):
        token_ids, segment_ids, padding_mask: int [batch, seq], token_ids
            corrupted at the masked positions (80% [MASK], 10% random, 10% kept);
        masked_positions, masked_ids: int [batch, predictions];
        masked_weights: float [batch, predictions] (0 marks padding predictions).
    Outputs (`call`): dict with generator_logits float32 [batch, predictions,
        vocab] (the generator's MLM logits at the masked positions) and
        discriminator_logits float32 [batch, seq] (> 0: "replaced") of token_ids
        as given.

    Training (compute_loss_and_metrics): the generator, a BertEncoder
    `generator_size` as wide (see generator_config) sharing the discriminator's
    embeddings, as the paper does (token, segment and position tables, one set
    of variables, projected to the generator's width; its MLM head maps back
    onto the token table's), learns masked LM on the masked positions: its
    softmax updates every row of the shared token table at every step, where
    the discriminator's loss reaches only the tokens in its input. At each
    masked position a token is drawn from its softmax (no gradient flows
    through the draw); the discriminator sees the original
    sequence with the draws put in and learns, by binary cross-entropy over the
    real tokens, which tokens differ from the original (see
    replaced_token_labels). Loss = generator MLM loss + discriminator_weight x
    discriminator loss.

    The draws use a Keras SeedGenerator (`sampling_seed`), as dropout does: it is
    seeded from the run's seed and its state is checkpointed with the dropout
    RNG states (kerasllm.training.checkpoints.rng_states), so a resumed run
    draws what an uninterrupted one would.
    """

    def __init__(self, backbone: BertEncoder, generator_size=DEFAULT_GENERATOR_SIZE,
                 discriminator_weight=DEFAULT_DISCRIMINATOR_WEIGHT, **kwargs):
        super().__init__(backbone, **kwargs)
        if discriminator_weight <= 0:
            raise ConfigError(f"discriminator_weight must be positive, got "
                              f"{discriminator_weight} (ELECTRA uses 50)")
        self.generator_size = float(generator_size)
        self.discriminator_weight = float(discriminator_weight)
        config = backbone.config
        self.generator = BertEncoder(generator_config(config, self.generator_size),
                                     embedding=backbone.embedding, dtype=self.dtype_policy,
                                     name="generator")
        # Tied to the shared table: it maps the generator's outputs to the table's width.
        self.generator_head = tied_lm_head(backbone, self.dtype_policy, "generator_head")
        self.discriminator_head = ReplacedTokenHead(
            activation=config.activation, initializer_range=config.initializer_range,
            dtype=self.dtype_policy, name="discriminator_head")
        self.sampling_seed = keras.random.SeedGenerator(name="sampling_seed")

    @classmethod
    def from_name(cls, name, generator_size=DEFAULT_GENERATOR_SIZE,
                  discriminator_weight=DEFAULT_DISCRIMINATOR_WEIGHT, **overrides):
        """A fresh pretrainer whose discriminator has a registered config, e.g.
        `from_name("bert_small", generator_size=0.25)`."""
        from kerasllm.models import registry  # the registry imports this family
        return cls(BertEncoder(registry.get(name).replace(**overrides)),
                   generator_size=generator_size,
                   discriminator_weight=discriminator_weight)

    def task_config(self):
        return {**super().task_config(), "generator_size": self.generator_size,
                "discriminator_weight": self.discriminator_weight}

    def serving_signatures(self):
        """bert_signatures of the discriminator (embed; no fill_mask: the
        generator is a training aid, too small to serve)."""
        return bert_signatures(self.backbone, self.needs_tokenizer("export"),
                               self.sequence_length)

    def dummy_inputs(self, seq_length):
        # Two masked positions: the generator's head needs some to create its weights.
        return super().dummy_inputs(seq_length) | {
            "masked_positions": ops.zeros((1, 2), "int32")}

    def call(self, inputs, training=None):
        # The discriminator first: the shared embeddings are created (and named) by
        # the encoder that owns them.
        discriminator_logits = self.discriminator_logits(inputs, training)
        return {"generator_logits": self.generator_logits(inputs, training),
                "discriminator_logits": discriminator_logits}

    def generator_logits(self, inputs, training=None):
        """float32 [B, P, V]: the generator's MLM logits at inputs' masked_positions."""
        outputs = self.generator(inputs, training=training)
        return self.generator_head(outputs["sequence_output"], inputs["masked_positions"])

    def discriminator_logits(self, inputs, training=None):
        """float32 [B, S]: the discriminator's "replaced" logit for each token."""
        outputs = self.backbone(inputs, training=training)
        return self.discriminator_head(outputs["sequence_output"])

    def sample(self, logits):
        """int32 [B, P]: one token drawn from softmax(logits [B, P, V]) at each
        position, with no gradient."""
        logits = ops.stop_gradient(logits)
        shape = ops.shape(logits)
        draws = keras.random.categorical(ops.reshape(logits, (-1, shape[-1])), 1,
                                         dtype="int32", seed=self.sampling_seed)
        return ops.reshape(draws, shape[:-1])

    def compute_loss_and_metrics(self, batch, training=False):
        """Returns (loss, metrics) for one batch: the loss is a float32 scalar
        (mean over this batch); metrics is a dict of float32 scalars:
        generator_loss and generator_accuracy (its MLM over the masked positions),
        discriminator_loss and discriminator_accuracy (over the real tokens),
        discriminator_base_rate_loss (the loss of a discriminator that knows only
        the share of replaced tokens: one it must beat to have learned anything),
        and replaced_fraction (of the masked positions, where the generator's
        draw differs from the original)."""
        positions, weights = batch["masked_positions"], batch["masked_weights"]
        generator_logits = self.generator_logits(batch, training)
        mlm = sparse_cross_entropy(batch["masked_ids"], generator_logits)
        generator_loss = masked_mean(mlm.loss, weights)

        original = put_tokens(batch["token_ids"], positions, batch["masked_ids"], weights)
        seen = put_tokens(original, positions, self.sample(generator_logits), weights)
        labels = replaced_token_labels(original, seen, batch["padding_mask"])
        logits = self.discriminator_logits({**batch, "token_ids": seen}, training)
        real = batch["padding_mask"]
        discriminator_loss = masked_mean(
            ops.binary_crossentropy(ops.cast(labels, "float32"), logits, from_logits=True),
            real)
        correct = ops.equal(ops.cast(logits > 0, "int32"), labels)
        share = masked_mean(labels, real)
        metrics = {
            "generator_loss": generator_loss,
            "generator_accuracy": masked_mean(mlm.correct, weights),
            "discriminator_loss": discriminator_loss,
            "discriminator_accuracy": masked_mean(correct, real),
            # Cross-entropy of the share with itself: the base rate's entropy.
            "discriminator_base_rate_loss": ops.binary_crossentropy(share, share),
            "replaced_fraction": masked_mean(tf.gather(labels, positions, batch_dims=1),
                                             weights),
        }
        return generator_loss + self.discriminator_weight * discriminator_loss, metrics
