"""Decoding exported in a SavedModel runs the way TF Serving runs it: a TF1 session
in a fresh process, XLA compilation disabled, no Xla* or Python ops; and it gives
what it gives in-process."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from kerasllm.export.check import op_report
from kerasllm.generation import beam_search, generate, left_pad
from tests.fresh_process import serve_in_fresh_process
from tests.generation.toy_models import ContextModel

MAX_NEW_TOKENS = 6
INPUTS = {  # three requests, as TF Serving would batch them (zero padding)
    "prompt_ids": [[1, 2, 3, 4], [5, 0, 0, 0], [6, 7, 0, 0]],
    "prompt_lengths": [4, 1, 2],
    "max_new_tokens": [6, 6, 3],
    "temperature": [0.0, 1.0, 0.7],
    "top_k": [0, 0, 3],
    "top_p": [1.0, 0.9, 1.0],
    "seed": [1, 2, 3],
    "stop_sequences": [[[7, 7]], [[3, 1]], [[0, 0]]],
    "stop_sequence_lengths": [[2], [2], [0]],
    "length_penalty_alpha": [0.6, 0.0, 1.0],
}


def spec(rank, dtype, name):
    return tf.TensorSpec([None] * rank, dtype, name=name)


def exported_module():
    """A tf.Module with the toy model's variables and two decoding signatures."""
    module = tf.Module()
    module.model = model = ContextModel(vocab_size=8, seed=7)

    @tf.function(input_signature=[
        spec(2, tf.int32, "prompt_ids"), spec(1, tf.int32, "prompt_lengths"),
        spec(1, tf.int32, "max_new_tokens"), spec(1, tf.float32, "temperature"),
        spec(1, tf.int32, "top_k"), spec(1, tf.float32, "top_p"), spec(1, tf.int32, "seed"),
        spec(3, tf.int32, "stop_sequences"), spec(2, tf.int32, "stop_sequence_lengths")])
    def sample(prompt_ids, prompt_lengths, max_new_tokens, temperature, top_k, top_p, seed,
               stop_sequences, stop_sequence_lengths):
        generated = generate(
            model.step, model.init_cache, left_pad(prompt_ids, prompt_lengths),
            MAX_NEW_TOKENS, temperature=temperature, top_k=top_k, top_p=top_p, seeds=seed,
            stop_token_ids=[0], stop_sequences=stop_sequences,
            stop_sequence_lengths=stop_sequence_lengths,
            max_new_tokens_per_row=max_new_tokens)
        return generated._asdict()

    @tf.function(input_signature=[spec(2, tf.int32, "prompt_ids"),
                                  spec(1, tf.int32, "prompt_lengths"),
                                  spec(1, tf.float32, "length_penalty_alpha")])
    def beams(prompt_ids, prompt_lengths, length_penalty_alpha):
        return beam_search(model.step, model.init_cache, left_pad(prompt_ids, prompt_lengths),
                           MAX_NEW_TOKENS, 3, length_penalty_alpha=length_penalty_alpha,
                           stop_token_ids=[0])._asdict()

    module.sample, module.beams = sample, beams
    return module


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    module = exported_module()
    path = str(tmp_path_factory.mktemp("generation") / "1")
    tf.saved_model.save(module, path,
                        signatures={"serving_default": module.sample, "beams": module.beams})
    return module, path


def test_the_export_has_one_loop_per_signature_and_nothing_tf_serving_lacks(exported):
    _, path = exported
    model = saved_model_pb2.SavedModel()
    with open(f"{path}/saved_model.pb", "rb") as f:
        model.ParseFromString(f.read())
    meta_graph = model.meta_graphs[0]
    op_types, problems = op_report(meta_graph)
    assert problems == []
    assert not [op for op in op_types if "Xla" in op or "PyFunc" in op]
    loops = [node for function in meta_graph.graph_def.library.function
             for node in function.node_def if node.op in ("While", "StatelessWhile")]
    assert len(loops) == 2


def test_tf_serving_runs_it_and_gets_what_python_gets(exported, tmp_path):
    module, path = exported
    served = serve_in_fresh_process(path, INPUTS, str(tmp_path))

    def in_process(function):
        names = [s.name for s in function.input_signature]
        dtypes = [s.dtype for s in function.input_signature]
        outputs = function(*[tf.constant(INPUTS[n], d) for n, d in zip(names, dtypes)])
        return {name: value.numpy() for name, value in outputs.items()}

    for signature, function in (("serving_default", module.sample), ("beams", module.beams)):
        for name, value in in_process(function).items():
            np.testing.assert_allclose(served[f"{signature}/{name}"], value, rtol=1e-5,
                                       err_msg=f"{signature}/{name}")
    lengths = served["serving_default/lengths"]
    assert np.all((1 <= lengths) & (lengths <= INPUTS["max_new_tokens"]))
    assert served["beams/token_ids"].shape == (3, 3, MAX_NEW_TOKENS)
