"""The base of the task models whose output is a distribution over the vocabulary."""
from kerasllm.models import output_projection
from kerasllm.models.task import TaskModel


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
