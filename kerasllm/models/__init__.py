"""Model families built from `kerasllm.layers`, and their named configs."""
from kerasllm.models import configs
from kerasllm.models.bert import BertEncoder
from kerasllm.models.bert_classifier import BertClassifier
from kerasllm.models.bert_pretrainer import BertPretrainer
from kerasllm.models.bert_span_qa import BertSpanQA
from kerasllm.models.bert_token_classifier import BertTokenClassifier
from kerasllm.models.configs import BertConfig, UnknownModelError
