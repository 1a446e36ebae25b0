"""keras.layers.EinsumDense computed as one 2-D matrix multiplication, optionally with
a LoRA adapter beside its frozen kernel.

For an equation such as "btd,dnh->btnh" with a static sequence length, Keras'
TensorFlow backend computes EinsumDense as a matmul of the [b, t, d] input with
the kernel broadcast over the batch. The gradient of that broadcast matmul with
respect to the kernel is one small [d, t] x [t, n*h] product per example followed
by a sum over the batch: in a BERT training step on CPU those attention
projections took more time than every other matmul together. Flattening the
leading axes first makes both the forward pass and both gradients single large
matmuls; the weights are the same (same shapes, names and initialisers).
"""
import contextlib
import math

import keras
from keras import ops
from keras.src.layers.core import einsum_dense

from kerasllm.layers.low_rank_adapter import LowRankAdapter


@keras.saving.register_keras_serializable(package="kerasllm")
class MatmulEinsumDense(keras.layers.EinsumDense):
    """An EinsumDense whose equation contracts the input's trailing axes with the
    kernel's leading ones, e.g. "btd,dnh->btnh" (split into heads), "btnh,nhd->btd"
    (merge heads) or "...d,de->...e" (a Dense layer, see `dense`); any other
    equation is a ValueError.

    Input [*lead, *contracted]; kernel [*contracted, *out]; output [*lead, *out]
    (plus the bias, then the activation, as in EinsumDense). With quantization
    enabled, Keras' own computation runs: `quantize("int8")` (what
    `keras.Model.quantize` calls) is EinsumDense's, which Keras refuses to
    subclasses unless they opt in, as this one does (its weights and equation are
    EinsumDense's own). A layer with an adapter is not quantized: merge it first.

    LoRA: `enable_lora(rank, lora_alpha, dropout)` freezes the kernel and bias and
    adds a LowRankAdapter seeing the kernel as one [prod(contracted), prod(out)]
    matrix; `merge_lora()` folds it into the kernel and removes it, leaving a
    plain layer (one matmul) with the same outputs.
    """

    def __init__(self, equation, output_shape, adapter=None, **kwargs):
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
        # An adapter's settings from get_config; the adapter is made once built.
        self._adapter_config = adapter
        self.adapter = None

    @property
    def matrix_shape(self):
        """(input_size, output_size): the kernel seen as one matrix."""
        shape = self._kernel.shape
        return (math.prod(shape[:self.num_contracted]), math.prod(shape[self.num_contracted:]))

    def build(self, input_shape):
        super().build(input_shape)
        if self._adapter_config:
            self.enable_lora(**self._adapter_config)

    def enable_lora(self, rank, lora_alpha=None, dropout=0.0):
        """Freezes the kernel and bias and adds a LowRankAdapter of `rank` (scale
        lora_alpha / rank, default 1; `dropout` on its input). Raises ValueError if
        the layer is not built, has one already, or rank exceeds its narrower side."""
        if not self.built:
            raise ValueError(f"build {self.name} before enabling LoRA on it")
        if self.adapter is not None:
            raise ValueError(f"{self.name} has a LoRA adapter already")
        input_size, output_size = self.matrix_shape
        if not 1 <= rank <= min(input_size, output_size):
            raise ValueError(f"LoRA rank {rank} does not fit {self.path} ({input_size} x "
                             f"{output_size}): use 1 .. {min(input_size, output_size)}")
        policy = self.dtype_policy
        self._tracker.unlock()
        # Adapters keep float32 weights however the base is stored (bfloat16 base
        # weights halve the memory; the small adapters need the precision).
        self.adapter = LowRankAdapter(
            rank, output_size, alpha=lora_alpha, dropout=dropout, name="lora",
            dtype="float32" if policy.compute_dtype == "float32"
            else f"mixed_{policy.compute_dtype}")
        # Named under this layer's path, as its kernel is (checkpoints key adapters by it).
        with contextlib.ExitStack() as scopes:
            for name in self.path.split("/"):
                scopes.enter_context(keras.name_scope(name))
            self.adapter.build((None, input_size))
        self._tracker.lock()
        self._adapter_config = {"rank": rank, "lora_alpha": self.adapter.alpha,
                                "dropout": dropout}
        self._kernel.trainable = False
        if self.bias is not None:
            self.bias.trainable = False

    def merge_lora(self):
        """Adds the adapter's update to the kernel and removes the adapter; the kernel
        and bias are trainable again. No-op without an adapter."""
        if self.adapter is None:
            return
        delta = ops.reshape(self.adapter.delta(), self._kernel.shape)
        self._kernel.assign(ops.cast(ops.cast(self._kernel, "float32") + delta,
                                     self._kernel.dtype))
        adapter, self._adapter_config = self.adapter, None
        self._tracker.unlock()
        self._tracker.untrack(adapter)
        self.adapter = None
        self._tracker.lock()
        self._kernel.trainable = True
        if self.bias is not None:
            self.bias.trainable = True

    def quantize(self, mode=None, type_check=True, config=None):
        """EinsumDense's quantization of the kernel (see the class docstring); a
        ValueError with an adapter, which Keras' quantized call would ignore."""
        if self.adapter is not None:
            raise ValueError(f"{self.path} has a LoRA adapter: merge_lora() before "
                             "quantizing (the quantized layer cannot carry it)")
        super().quantize(mode, type_check=False, config=config)

    def _set_quantization_info(self):
        # Keras 3.15 hands the input's rank to _analyze_quantization_info where it
        # takes a shape, which only equations with "..." (dense's) measure: len(int)
        # fails. A shape of that rank gives the axes Keras means.
        (self._input_reduced_axes, self._kernel_reduced_axes, self._input_transpose_axes,
         self._kernel_transpose_axes, self._input_expand_axes, self._kernel_expand_axes,
         self._input_squeeze_axes, self._kernel_squeeze_axes,
         self._custom_gradient_equation, self._kernel_reverse_transpose_axes,
         ) = einsum_dense._analyze_quantization_info(self.equation,
                                                     (None,) * self.input_spec.ndim)

    def call(self, inputs, training=None):
        if self.quantization_mode is not None:
            return super().call(inputs, training=training)
        size_in, size_out = self.matrix_shape
        flat_inputs = ops.reshape(inputs, (-1, size_in))
        flat = ops.matmul(flat_inputs, ops.reshape(self._kernel, (size_in, size_out)))
        if self.adapter is not None:
            flat = flat + self.adapter(flat_inputs, training=training)
        lead = ops.shape(inputs)[:len(inputs.shape) - self.num_contracted]
        outputs = ops.reshape(flat, (*lead, *self._kernel.shape[self.num_contracted:]))
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        return {**super().get_config(), "adapter": self._adapter_config}


def dense(units, *, activation=None, use_bias=True, initializer_range=0.02, dtype=None,
          name=None):
    """A Dense layer (kernel [input_width, units], optional bias [units]) as a
    MatmulEinsumDense, so it takes LoRA adapters like the attention projections."""
    return MatmulEinsumDense(
        "...d,de->...e", output_shape=(units,), bias_axes="e" if use_bias else None,
        activation=activation,
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=initializer_range),
        dtype=dtype, name=name)
