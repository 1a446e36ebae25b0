"""Named models: each name maps to its family and config, each family to the
backbone built from that config and the kind of tokenizer it reads.

    family, config = registry.lookup("bert_tiny")
    backbone = family.backbone_class(config)

How to add a config (a new size of a family): one entry in that family's configs
dict, e.g. GPT_CONFIGS in kerasllm/models/gpt/config.py; every trainer's --model
and `lookup` know it from there. Test its parameter count beside the others'
(tests/models/gpt/test_gpt.py for GPT).

How to add a family: one `Family` in FAMILIES below, and these files, each shown
for GPT (tests/models/test_new_family.py trains a toy family made of the first three):

    config      kerasllm/models/gpt/config.py      GptConfig, a frozen ModelConfig, and
                                                   GPT_CONFIGS, its named sizes
    backbone    kerasllm/models/gpt/backbone.py    GptDecoder, a models.backbone.Backbone
    task        kerasllm/models/gpt/causal_lm.py   GptCausalLM, a models.task.TaskModel
                                                   (build_for_inputs,
                                                   compute_loss_and_metrics): what
                                                   kerasllm.training.loop trains
    data        kerasllm/data/lm_examples.py       dataset_fn(input_context, start_batch)
                                                   for the loop, on data/batching.py;
                                                   text to ids: tokenizers/lm_packing.py
    evaluation  kerasllm/evaluation/language_model.py
                                                   held-out scores for the trainer's
                                                   evaluation.validation.Validation
    signatures  kerasllm/export/gpt_signatures.py  serving signatures on raw text, inputs
                                                   checked by export/inputs.py, and
                                                   the sample inputs of export/warmup.py
    trainer     trainers/train_gpt.py              its flags (its own, then groups of
                                                   trainers/shared_flags.py) -> config ->
                                                   train() -> export
    tests       tests/models/gpt/test_gpt.py, tests/data/test_lm_examples.py,
                tests/export/test_generation_signatures.py, tests/trainers/test_train_gpt.py
"""
import dataclasses

from kerasllm.errors import KerasLLMError
from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.bert.config import BERT_CONFIGS, BertConfig
from kerasllm.models.gpt.backbone import GptDecoder
from kerasllm.models.gpt.config import GPT_CONFIGS, GptConfig
from kerasllm.models.seq2seq.backbone import Seq2SeqTransformer
from kerasllm.models.seq2seq.config import SEQ2SEQ_CONFIGS, Seq2SeqConfig


class UnknownModelError(KerasLLMError, KeyError):
    """A model or family name that is not in the registry."""

    def __str__(self):
        return self.args[0]


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family.

    Attributes:
      name: e.g. "bert"; recorded in the config.json beside checkpoints.
      config_class: the frozen config dataclass.
      backbone_class: a kerasllm.models.backbone.Backbone built from a config.
      tokenizer_kind: the kerasllm.tokenizers kind its models are trained with.
      configs: {model name: config}.
    """

    name: str
    config_class: type
    backbone_class: type
    tokenizer_kind: str
    configs: dict


FAMILIES = {
    "bert": Family("bert", BertConfig, BertEncoder, "wordpiece", BERT_CONFIGS),
    "gpt": Family("gpt", GptConfig, GptDecoder, "sentencepiece", GPT_CONFIGS),
    "seq2seq": Family("seq2seq", Seq2SeqConfig, Seq2SeqTransformer, "sentencepiece",
                      SEQ2SEQ_CONFIGS),
}


def family(name):
    """The Family called `name`, e.g. "bert"."""
    if name not in FAMILIES:
        raise UnknownModelError(f"unknown model family {name!r}; known families: "
                                f"{', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def model_names(family_name=None):
    """The registered model names, of one family or all, sorted."""
    return sorted(name for f in FAMILIES.values() if family_name in (None, f.name)
                  for name in f.configs)


def lookup(name):
    """(Family, config) registered under `name`, e.g. `lookup("bert_tiny")`."""
    for f in FAMILIES.values():
        if name in f.configs:
            return f, f.configs[name]
    raise UnknownModelError(f"unknown model {name!r}; known models: "
                            f"{', '.join(model_names())}")


def get(name):
    """The config registered under `name`."""
    return lookup(name)[1]
