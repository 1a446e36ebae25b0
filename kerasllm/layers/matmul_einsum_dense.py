"""keras.layers.EinsumDense computed as one 2-D matrix multiplication.

For an equation such as "btd,dnh->btnh" with a static sequence length, Keras'
TensorFlow backend computes EinsumDense as a matmul of the [b, t, d] input with
the kernel broadcast over the batch. The gradient of that broadcast matmul with
respect to the kernel is one small [d, t] x [t, n*h] product per example followed
by a sum over the batch: in a BERT training step on CPU those attention
projections took more time than every other matmul together. Flattening the
leading axes first makes both the forward pass and both gradients single large
matmuls; the weights are the same (same shapes, names and initialisers).
"""
import math

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerasllm")
class MatmulEinsumDense(keras.layers.EinsumDense):
    """An EinsumDense whose equation contracts the input's trailing axes with the
    kernel's leading ones, e.g. "btd,dnh->btnh" (split into heads) or
    "btnh,nhd->btd" (merge heads); any other equation is a ValueError.

    Input [*lead, *contracted]; kernel [*contracted, *out]; output [*lead, *out]
    (plus the bias, then the activation, as in EinsumDense). With LoRA or
    quantization enabled, Keras' own computation runs.
    """

    def __init__(self, equation, output_shape, **kwargs):
        super().__init__(equation, output_shape, **kwargs)
        operands, output = equation.split("->")
        inputs, kernel = operands.split(",")
        self.num_contracted = len(set(inputs) & set(kernel))
        contracted = inputs[len(inputs) - self.num_contracted:]
        if not (contracted and kernel.startswith(contracted)
                and output == inputs[:-self.num_contracted] + kernel[self.num_contracted:]):
            raise ValueError(
                f"MatmulEinsumDense needs an equation contracting the input's trailing "
                f"axes with the kernel's leading ones, like 'btd,dnh->btnh'; got {equation!r}")

    def call(self, inputs, training=None):
        if self.lora_enabled or self.quantization_mode is not None:
            return super().call(inputs, training=training)
        contracted_shape = self.kernel.shape[:self.num_contracted]
        out_shape = self.kernel.shape[self.num_contracted:]
        size_in = math.prod(contracted_shape)
        flat = ops.matmul(ops.reshape(inputs, (-1, size_in)),
                          ops.reshape(self.kernel, (size_in, math.prod(out_shape))))
        lead = ops.shape(inputs)[:len(inputs.shape) - self.num_contracted]
        outputs = ops.reshape(flat, (*lead, *out_shape))
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
