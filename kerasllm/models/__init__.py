"""Model families built from `kerasllm.layers`: each a backbone, its named configs and
task models (`models.task.TaskModel`), all listed in `models.registry`."""
from kerasllm.models import registry
from kerasllm.models.bert import (BertClassifier, BertConfig, BertEncoder, BertPretrainer,
                                  BertSpanQA, BertTokenClassifier, ElectraPretrainer,
                                  PermutationLanguageModel)
from kerasllm.models.gpt import GptCausalLM, GptConfig, GptDecoder
from kerasllm.models.registry import UnknownModelError
from kerasllm.models.seq2seq import Seq2SeqConfig, Seq2SeqLM, Seq2SeqTransformer
from kerasllm.models.task import TaskModel
