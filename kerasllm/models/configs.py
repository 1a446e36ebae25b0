"""Named model configurations: plain frozen dataclasses in one registry per family."""
import dataclasses


class UnknownModelError(KeyError):
    """A model name that is not in the registry."""

    def __str__(self):
        return self.args[0]


@dataclasses.dataclass(frozen=True)
class BertConfig:
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

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        return dataclasses.asdict(self)


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

REGISTRIES = {"bert": BERT_CONFIGS}


def get(name):
    """The config registered under `name`, e.g. `get("bert_tiny")`."""
    for registry in REGISTRIES.values():
        if name in registry:
            return registry[name]
    known = ", ".join(sorted(n for r in REGISTRIES.values() for n in r))
    raise UnknownModelError(f"unknown model {name!r}; known models: {known}")
