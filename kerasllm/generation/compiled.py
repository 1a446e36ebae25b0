"""Decoding compiled with XLA for in-process calls (a task's generate or translate),
around the same search functions the exports run uncompiled."""
import tensorflow as tf


def compiled_decoding(search, model):
    """`search` (kerasllm.generation's generate or beam_search) over `model`'s steps, as
    a tf.function compiled with XLA and given the model's decoding weights.

    Call it with what `search` takes after its step and cache functions
    (prompts, max_new_tokens, ...). It holds no string ops, so it can sit inside a
    traced function that tokenizes and detokenizes around it; XLA compiles it once
    per prompt width (prompts are bucketed, see kerasllm.generation.prompts). Never
    inside an export: TF Serving runs without XLA.
    """

    def run(prompts, max_new_tokens, *args, **kwargs):
        return search(model.generation_step, model.init_cache, prompts, max_new_tokens,
                      *args, weights=model.decoding_weights(), **kwargs)

    return tf.function(run, jit_compile=True, autograph=False)
