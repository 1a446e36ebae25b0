"""GPT: decoder-only language models (GPT-2 and Llama styles), their configs and the
causal-LM task."""
from kerasllm.models.gpt.backbone import GptDecoder, positions_from_padding_mask
from kerasllm.models.gpt.causal_lm import GptCausalLM
from kerasllm.models.gpt.config import GPT_CONFIGS, GptConfig
