"""BERT: the encoder backbone, its configs, and the task models built on it."""
from kerasllm.models.bert.backbone import BertEncoder
from kerasllm.models.bert.classifier import BertClassifier
from kerasllm.models.bert.config import BERT_CONFIGS, BertConfig
from kerasllm.models.bert.electra import ElectraPretrainer
from kerasllm.models.bert.permutation_lm import PermutationLanguageModel
from kerasllm.models.bert.pretrainer import BertPretrainer
from kerasllm.models.bert.span_qa import BertSpanQA
from kerasllm.models.bert.token_classifier import BertTokenClassifier
