"""The matmul FLOPs bench.all charges per token (its MFU figures) agree with
TensorFlow's own count of the float operations in each family's forward graph."""
import pytest
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from bench import cases


@pytest.mark.parametrize("name", ["bert_tiny", "gpt_tiny", "seq2seq_tiny"])
def test_training_flops_match_the_profilers_count_of_the_forward_graph(name):
    batch_size, seq_length = 2, 32
    builders, batch = cases.training_case(name, batch_size, seq_length)
    task = builders[cases.OURS]()
    task.build_for_inputs()
    spec = {k: tf.TensorSpec(v.shape, v.dtype) for k, v in batch.items()}
    forward = tf.function(
        lambda batch: task.compute_loss_and_metrics(batch, training=False)[0]
    ).get_concrete_function(spec)
    graph = convert_to_constants.convert_variables_to_constants_v2(forward).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    counted = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
    tokens = sum(v.size for k, v in batch.items() if k.endswith("padding_mask"))
    # The profiler also counts elementwise ops (a few per cent); seq2seq's decoder
    # reads one target token fewer than the loop counts.
    assert cases.training_flops_per_token(name, seq_length) / 3 == pytest.approx(
        counted / tokens, rel=0.03)
