import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.layers.matmul_einsum_dense import MatmulEinsumDense
from tests.roundtrip import config_roundtrip

CASES = [("btd,dnh->btnh", (None, 3, 4), "nh", (2, 5, 6)),
         ("btnh,nhd->btd", (None, 6), "d", (2, 5, 3, 4))]


@pytest.mark.parametrize("equation,output_shape,bias_axes,input_shape", CASES)
def test_outputs_and_gradients_equal_einsum_dense(equation, output_shape, bias_axes,
                                                  input_shape):
    ours = MatmulEinsumDense(equation, output_shape, bias_axes=bias_axes,
                             activation="gelu", bias_initializer="random_normal")
    reference = keras.layers.EinsumDense(equation, output_shape, bias_axes=bias_axes,
                                         activation="gelu")
    ours.build(input_shape)
    reference.build(input_shape)
    reference.set_weights(ours.get_weights())
    x = tf.constant(np.random.default_rng(0).normal(size=input_shape), tf.float32)
    # A length unknown when traced takes a different path in Keras' einsum.
    dynamic = tf.TensorSpec([None] * len(input_shape), tf.float32)
    for spec in (tf.TensorSpec(input_shape, tf.float32), dynamic):
        results = []
        for layer in (ours, reference):
            @tf.function(input_signature=[spec])
            def forward_and_gradients(inputs, layer=layer):
                with tf.GradientTape() as tape:
                    tape.watch(inputs)
                    y = layer(inputs)
                    loss = tf.reduce_sum(y * tf.sin(y))
                return [y, *tape.gradient(loss, [inputs, *layer.trainable_variables])]
            results.append([t.numpy() for t in forward_and_gradients(x)])
        for got, want in zip(*results):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_other_equations_are_refused_and_config_round_trips():
    with pytest.raises(ValueError, match="trailing axes.*'ab,cb->ac'"):
        MatmulEinsumDense("ab,cb->ac", (3,))  # contracts the kernel's last axis
    layer = MatmulEinsumDense("btd,dnh->btnh", (None, 3, 4), bias_axes="nh")
    config_roundtrip(layer)
