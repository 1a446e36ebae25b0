"""Decoding a real GPT (both styles): cached greedy generation equals recomputing the
whole sequence for every token, and beam search with one beam equals greedy; the
model's decoding weights change no token, with or without XLA."""
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


def tiny_model(style, **overrides):
    config = registry.get("gpt_tiny").replace(vocab_size=64, max_sequence_length=32,
                                              dropout=0.0, attention_dropout=0.0,
                                              **STYLES[style], **overrides)
    tf.keras.utils.set_random_seed(1)
    return GptCausalLM(GptDecoder(config)).build_for_inputs()


@pytest.mark.parametrize("style", sorted(STYLES))
def test_cached_greedy_equals_recomputation_and_one_beam(style):
    model = tiny_model(style)
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


@pytest.mark.parametrize("style, tied", [("gpt2", True), ("llama", False)])
def test_decoding_weights_change_no_token(style, tied):
    model = tiny_model(style, tie_embeddings=tied)
    prompts = left_pad(tf.ragged.constant(PROMPTS), length_multiple=8)
    cache = model.init_cache(3, 8)
    logits = [model.generation_step(prompts.token_ids, cache, 0, prompts.positions,
                                    prompts.key_mask, **weights)[0]
              for weights in ({}, {"weights": model.decoding_weights()})]
    np.testing.assert_allclose(logits[1], logits[0], atol=1e-5)

    plain = generate(model.generation_step, model.init_cache, prompts, NEW_TOKENS)
    plain_beams = beam_search(model.generation_step, model.init_cache, prompts, NEW_TOKENS, 3)

    @tf.function(jit_compile=True, autograph=False)
    def compiled(prompts):
        weights = model.decoding_weights()
        return (generate(model.generation_step, model.init_cache, prompts, NEW_TOKENS,
                         weights=weights),
                beam_search(model.generation_step, model.init_cache, prompts, NEW_TOKENS, 3,
                            weights=weights))

    generated, beams = compiled(prompts)
    np.testing.assert_array_equal(generated.token_ids, plain.token_ids)
    np.testing.assert_array_equal(beams.token_ids, plain_beams.token_ids)
    np.testing.assert_allclose(beams.scores, plain_beams.scores, rtol=1e-5)
