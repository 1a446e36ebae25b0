"""Decoding shared by the model families: prompts left-padded into length buckets
(`prompts`), settings shared or given per row (`row_settings`), the per-row
samplers (`sampling`: greedy, temperature, top-k, top-p, drawing from `row_random`),
`generate` with stop tokens and stop sequences (`decode`, `stopping`), and
`beam_search`; all in TensorFlow ops, one tf.while_loop per call, exportable to TF
Serving and compilable with XLA. A model takes part through the step function
described in `kerasllm.generation.decode`."""
from kerasllm.generation.beam_search import (BeamSearchOutput, beam_search, length_penalty,
                                             reorder_beams, repeat_for_beams)
from kerasllm.generation.decode import (LENGTH, STOP_SEQUENCE, STOP_TOKEN, Generated,
                                        generate)
from kerasllm.generation.errors import GenerationError
from kerasllm.generation.prompts import Prompts, left_pad, padded_length
from kerasllm.generation.sampling import sample
