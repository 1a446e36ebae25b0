"""The base of the task models whose output is a distribution over the vocabulary."""
import tensorflow as tf

from kerasllm.models import output_projection
from kerasllm.models.task import TaskModel

# In-process decoding (generate, translate) is compiled with XLA by default where
# that measured faster: on a GPU, and on a CPU for models small enough that each
# op's overhead dominates a step; larger ones run faster through TensorFlow's own
# kernels (2 CPU cores, greedy, 48-64 new tokens: llama_mini 3.9x faster compiled,
# SmolLM2-135M 5x slower; docs/benchmarks.md).
XLA_ON_CPU_MAX_PARAMETERS = 30_000_000


class LanguageModelTask(TaskModel):
    """A backbone's outputs projected onto the vocabulary: through the token
    embedding table itself when config.tie_embeddings, else through its own
    `lm_head` (no bias, as in GPT-2, Llama and Transformer checkpoints).

    Subclasses name their backbone class (`backbone_class`) and give the backbone a
    public `token_embedding`; GptCausalLM and Seq2SeqLM are the two.
    """

    backbone_class = None

    def __init__(self, backbone, **kwargs):
        super().__init__(backbone, **kwargs)
        self.lm_head = (None if backbone.config.tie_embeddings
                        else self.head_dense(backbone.config.vocab_size, "lm_head",
                                             use_bias=False))

    @classmethod
    def from_name(cls, name, **overrides):
        """A fresh model for a registered config, e.g. `GptCausalLM.from_name("gpt_tiny")`."""
        from kerasllm.models import registry  # the registry imports the families
        return cls(cls.backbone_class(registry.get(name).replace(**overrides)))

    def decoding_compiled(self, jit_compile=None):
        """Whether in-process decoding runs compiled with XLA: `jit_compile` when given
        (True/False), else on a GPU or for at most XLA_ON_CPU_MAX_PARAMETERS weights."""
        if jit_compile is not None:
            return bool(jit_compile)
        return (bool(tf.config.list_logical_devices("GPU"))
                or self.count_params() <= XLA_ON_CPU_MAX_PARAMETERS)

    def pretrained_head_weights(self):
        return [] if self.lm_head is None else list(self.lm_head.weights)

    def logits(self, sequence_output, decoding_weights=None):
        """float32 [batch, seq, vocab] from the backbone's float [batch, seq, hidden]
        (the same with `decoding_weights()`)."""
        return output_projection.vocabulary_logits(
            sequence_output, self.backbone.token_embedding, self.lm_head, decoding_weights)

    def decoding_weights(self):
        """What `generation_step` takes as `weights`, to make once per decoding call,
        outside its loop (see kerasllm.models.output_projection.decoding_weights):
        without them, in-process decoding under XLA on CPU is several times slower."""
        return output_projection.decoding_weights(self.backbone.token_embedding,
                                                  self.lm_head)
