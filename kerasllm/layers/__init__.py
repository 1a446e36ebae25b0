"""Small, serializable Keras layers that the model families are built from."""
from kerasllm.layers.attention import MultiHeadAttention, causal_mask, empty_cache
from kerasllm.layers.bert_embedding import BertEmbedding
from kerasllm.layers.feed_forward import FeedForward, GatedFeedForward
from kerasllm.layers.masked_lm_head import MaskedLMHead
from kerasllm.layers.mean_pooling import sentence_embedding
from kerasllm.layers.next_sentence_head import NextSentencePredictionHead
from kerasllm.layers.replaced_token_head import ReplacedTokenHead
from kerasllm.layers.rms_norm import RMSNorm
from kerasllm.layers.rotary_embedding import RotaryEmbedding
from kerasllm.layers.sinusoidal_position_embedding import SinusoidalPositionEmbedding
from kerasllm.layers.transformer_decoder_block import TransformerDecoderBlock, normalization
from kerasllm.layers.transformer_encoder_block import TransformerEncoderBlock
