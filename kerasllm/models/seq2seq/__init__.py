"""Seq2seq: encoder-decoder Transformers (Vaswani et al., 2017), their configs and the
conditional language-model task (translation and other sequence transductions)."""
from kerasllm.models.seq2seq.backbone import Seq2SeqTransformer
from kerasllm.models.seq2seq.config import SEQ2SEQ_CONFIGS, Seq2SeqConfig
from kerasllm.models.seq2seq.seq2seq_lm import Seq2SeqLM
