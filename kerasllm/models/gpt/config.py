"""The GPT family's hyper-parameters and its named sizes: GPT-2 and Llama-style decoders."""
import dataclasses

from kerasllm.layers.transformer_decoder_block import FEED_FORWARDS, NORMS
from kerasllm.models.backbone import ModelConfig

POSITION_EMBEDDINGS = ("learned", "rotary")


@dataclasses.dataclass(frozen=True)
class GptConfig(ModelConfig):
    """Hyper-parameters of a decoder-only language model.

    The defaults are GPT-2's (learned positions, LayerNorm, a GELU MLP, biases, the
    output projection tied to the token embedding); a Llama-style model sets
    position_embedding="rotary", norm="rms_norm", feed_forward="swiglu",
    use_bias=False and usually fewer num_key_value_heads than num_heads.
    num_key_value_heads=None means num_heads (and is stored as that number).
    max_sequence_length is the learned position table's size, or with rotary
    positions the longest sequence the model is meant for.
    """

    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    vocab_size: int = 50257
    num_key_value_heads: int | None = None
    max_sequence_length: int = 1024
    position_embedding: str = "learned"
    rope_theta: float = 10000.0
    norm: str = "layer_norm"
    norm_epsilon: float = 1e-5
    feed_forward: str = "gelu_mlp"
    use_bias: bool = True
    tie_embeddings: bool = True
    dropout: float = 0.1
    attention_dropout: float = 0.1
    initializer_range: float = 0.02

    def __post_init__(self):
        if self.num_key_value_heads is None:
            object.__setattr__(self, "num_key_value_heads", self.num_heads)
        for field, value, choices in (
                ("position_embedding", self.position_embedding, POSITION_EMBEDDINGS),
                ("norm", self.norm, NORMS), ("feed_forward", self.feed_forward,
                                             tuple(FEED_FORWARDS))):
            if value not in choices:
                raise ValueError(f"{field} must be one of {choices}, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not a multiple of "
                             f"num_heads {self.num_heads}")
        if self.num_heads % self.num_key_value_heads:
            raise ValueError(f"num_heads {self.num_heads} is not a multiple of "
                             f"num_key_value_heads {self.num_key_value_heads}")

    @property
    def head_size(self):
        return self.hidden_size // self.num_heads


def _gpt2(layers, hidden, heads, vocab_size=50257, max_sequence_length=1024):
    return GptConfig(num_layers=layers, hidden_size=hidden, num_heads=heads,
                     intermediate_size=4 * hidden, vocab_size=vocab_size,
                     max_sequence_length=max_sequence_length)


def _llama_from_scratch(layers, hidden, heads):
    """A Llama-style decoder for training from scratch on a CPU: rotary positions,
    RMSNorm, a SwiGLU feed-forward net of about GPT-2's weights (8/3 of the width,
    rounded up to a multiple of 16), no biases, and no dropout: a short run over a
    small corpus sees each token about once, so dropout only slows it."""
    intermediate = -(-8 * hidden // 3 // 16) * 16
    return GptConfig(num_layers=layers, hidden_size=hidden, num_heads=heads,
                     intermediate_size=intermediate, vocab_size=8000,
                     max_sequence_length=512, position_embedding="rotary", norm="rms_norm",
                     feed_forward="swiglu", use_bias=False, dropout=0.0,
                     attention_dropout=0.0)


GPT_CONFIGS = {
    # GPT-2 shaped models small enough to train from scratch on a CPU, over an
    # 8000-piece SentencePiece vocabulary.
    "gpt_tiny": _gpt2(2, 128, 2, vocab_size=8000, max_sequence_length=512),
    "gpt_mini": _gpt2(4, 256, 4, vocab_size=8000, max_sequence_length=512),
    # The same sizes Llama-style, the recipe train_gpt trains by default (ahead of
    # the GPT-2 ones at equal tokens: docs/results/recipes.md).
    "llama_tiny": _llama_from_scratch(2, 128, 2),
    "llama_mini": _llama_from_scratch(4, 256, 4),
    # The published GPT-2 sizes (Radford et al., 2019): 124M and 355M weights.
    "gpt2_small": _gpt2(12, 768, 12),
    "gpt2_medium": _gpt2(24, 1024, 16),
    # HuggingFaceTB/SmolLM2-135M, a Llama-style decoder: 134.5M weights.
    "smollm2_135m": GptConfig(
        num_layers=30, hidden_size=576, num_heads=9, num_key_value_heads=3,
        intermediate_size=1536, vocab_size=49152, max_sequence_length=8192,
        position_embedding="rotary", rope_theta=100000.0, norm="rms_norm",
        norm_epsilon=1e-5, feed_forward="swiglu", use_bias=False, tie_embeddings=True,
        dropout=0.0, attention_dropout=0.0),
}
