"""Decoding a real GPT (both styles): cached greedy generation equals recomputing the
whole sequence for every token, and beam search with one beam equals greedy."""
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.generation import beam_search, generate, left_pad
from kerasllm.models import GptCausalLM, GptDecoder, registry

STYLES = {
    "gpt2": {},
    "llama": {"position_embedding": "rotary", "norm": "rms_norm", "feed_forward": "swiglu",
              "use_bias": False, "num_key_value_heads": 1},
}
PROMPTS = [[5, 6, 7, 8, 9], [10], [11, 12]]
NEW_TOKENS = 6


@pytest.mark.parametrize("style", sorted(STYLES))
def test_cached_greedy_equals_recomputation_and_one_beam(style):
    config = registry.get("gpt_tiny").replace(vocab_size=64, max_sequence_length=32,
                                              dropout=0.0, attention_dropout=0.0,
                                              **STYLES[style])
    tf.keras.utils.set_random_seed(1)
    model = GptCausalLM(GptDecoder(config)).build_for_inputs()
    prompts = left_pad(tf.ragged.constant(PROMPTS), length_multiple=8)
    generated = generate(model.generation_step, model.init_cache, prompts, NEW_TOKENS)
    for row, prompt in enumerate(PROMPTS):
        ids = list(prompt)
        for _ in range(NEW_TOKENS):
            logits = model({"token_ids": tf.constant([ids]),
                            "padding_mask": tf.ones([1, len(ids)], tf.int32)})["logits"]
            ids.append(int(np.argmax(logits[0, -1])))
        np.testing.assert_array_equal(generated.token_ids[row], ids[len(prompt):])
    beams = beam_search(model.generation_step, model.init_cache, prompts, NEW_TOKENS, 1)
    np.testing.assert_array_equal(beams.token_ids[:, 0], generated.token_ids)
