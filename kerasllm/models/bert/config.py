"""BERT's hyper-parameters and its named sizes."""
import dataclasses

from kerasllm.models.backbone import ModelConfig


@dataclasses.dataclass(frozen=True)
class BertConfig(ModelConfig):
    """Hyper-parameters of a BERT encoder (names follow the BERT paper)."""

    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    vocab_size: int = 30522
    max_sequence_length: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation: str = "gelu"
    layer_norm_epsilon: float = 1e-12
    norm_first: bool = False
    initializer_range: float = 0.02


def _bert(layers, hidden, heads):
    return BertConfig(num_layers=layers, hidden_size=hidden, num_heads=heads,
                      intermediate_size=4 * hidden)


# The sizes of the BERT paper and of google-research/bert's 24 smaller models.
BERT_CONFIGS = {
    "bert_tiny": _bert(2, 128, 2),
    "bert_mini": _bert(4, 256, 4),
    "bert_small": _bert(4, 512, 8),
    "bert_medium": _bert(8, 512, 8),
    "bert_base": _bert(12, 768, 12),
    "bert_large": _bert(24, 1024, 16),
    # The shape of all-MiniLM-L6-v2 (sentence-transformers), whose weights
    # kerasllm.convert imports: a 6-layer BERT with 384-wide hidden states.
    "minilm_l6": BertConfig(num_layers=6, hidden_size=384, num_heads=12,
                            intermediate_size=1536),
}
