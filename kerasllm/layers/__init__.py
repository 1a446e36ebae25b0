"""Small, serializable Keras layers that the model families are built from."""
from kerasllm.layers.attention import MultiHeadAttention, causal_mask
from kerasllm.layers.bert_embedding import BertEmbedding
from kerasllm.layers.masked_lm_head import MaskedLMHead
from kerasllm.layers.mean_pooling import sentence_embedding
from kerasllm.layers.next_sentence_head import NextSentencePredictionHead
from kerasllm.layers.transformer_encoder_block import TransformerEncoderBlock
