"""The seq2seq family's hyper-parameters and its named sizes: encoder-decoder
Transformers (Vaswani et al., 2017)."""
import dataclasses

from kerasllm.layers.transformer_decoder_block import NORM_POSITIONS
from kerasllm.models.backbone import ModelConfig

POSITION_EMBEDDINGS = ("sinusoidal", "learned")


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig(ModelConfig):
    """Hyper-parameters of an encoder-decoder Transformer.

    The defaults are the paper's base model's choices: sinusoidal positions,
    post-LN blocks (norm_position="post"; "pre" normalises each branch's input
    instead and adds a final norm to each stack), ReLU feed-forward nets, dropout
    0.1 on every residual branch and on the embeddings but none on the attention
    weights, label smoothing 0.1, and one token table shared by source, target and
    the output projection (one joint vocabulary; tie_embeddings=False keeps the
    shared source/target table but gives the output projection its own weights).

    max_sequence_length is the learned position table's size, or with sinusoidal
    positions the longest source or target the model is meant for.
    initializer_range is the standard deviation of every projection's initial
    weights; the token table's is hidden_size ** -0.5 (see Seq2SeqTransformer).
    """

    vocab_size: int
    hidden_size: int
    num_encoder_layers: int
    num_decoder_layers: int
    num_heads: int
    intermediate_size: int
    max_sequence_length: int = 512
    position_embedding: str = "sinusoidal"
    norm_position: str = "post"
    activation: str = "relu"
    tie_embeddings: bool = True
    dropout: float = 0.1
    attention_dropout: float = 0.0
    label_smoothing: float = 0.1
    initializer_range: float = 0.02
    norm_epsilon: float = 1e-6

    def __post_init__(self):
        for field, value, choices in (
                ("position_embedding", self.position_embedding, POSITION_EMBEDDINGS),
                ("norm_position", self.norm_position, NORM_POSITIONS)):
            if value not in choices:
                raise ValueError(f"{field} must be one of {choices}, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_heads {self.num_heads}")
        if self.hidden_size % 2:
            raise ValueError(f"hidden_size must be even (sinusoidal positions pair "
                             f"dimensions), got {self.hidden_size}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got "
                             f"{self.label_smoothing}")

    @property
    def head_size(self):
        return self.hidden_size // self.num_heads

    @property
    def num_layers(self):
        """Blocks between the embeddings and the top, the encoder's below the
        decoder's (the depth layer-wise learning rates count)."""
        return self.num_encoder_layers + self.num_decoder_layers


def _from_scratch(hidden, layers, heads):
    """A size that trains from scratch on a CPU in minutes: pre-LN blocks, no
    dropout and no label smoothing (a short run sees each pair a few times: there is
    no overfitting for either regulariser to hold back) and every projection
    initialised like the token table, at a standard deviation of hidden ** -0.5.
    With the paper's choices (post-LN, dropout 0.1, 0.02) a model answers every
    source with the same sentence for its first ~700 steps: it learns the target
    language before it learns to read the source. Each change here measurably
    shortens that (docs/results/recipes.md); the wider initialisation, which
    starts attention further from uniform, most."""
    return Seq2SeqConfig(vocab_size=8000, hidden_size=hidden, num_encoder_layers=layers,
                         num_decoder_layers=layers, num_heads=heads,
                         intermediate_size=4 * hidden, norm_position="pre", dropout=0.0,
                         label_smoothing=0.0, initializer_range=hidden ** -0.5)


SEQ2SEQ_CONFIGS = {
    # Small enough for a test to train in seconds.
    "seq2seq_tiny": _from_scratch(128, 2, 4),
    # Trains from scratch on a CPU: tens of thousands of sentence pairs in minutes.
    "seq2seq_small": _from_scratch(256, 3, 4),
    # The paper's base model (its table 3) over a shared 37000-piece vocabulary:
    # 63,082,496 weights.
    "transformer_base": Seq2SeqConfig(
        vocab_size=37000, hidden_size=512, num_encoder_layers=6, num_decoder_layers=6,
        num_heads=8, intermediate_size=2048, max_sequence_length=1024),
}
