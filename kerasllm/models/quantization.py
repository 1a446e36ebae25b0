"""Weight-only int8 for serving: Keras' own `Model.quantize("int8")` on the dense
and embedding kernels, the one way every export quantizes (`--quantize=int8` of the
trainers, `export(..., quantize="int8")` in Python).

    quantize(task, "int8")        # in place; the task then serves and exports int8
    quantized_copy(task, "int8")  # a copy (adapters merged), the task left as it was

Each kernel (attention and feed-forward projections, heads, the token, position and
segment tables) becomes int8 with one float32 scale per output channel (per row of
a table); activations stay float, so every matmul is float32 on a dequantized
kernel. Norms and biases stay float. A tied vocabulary projection reads the int8
table through kerasllm.layers.vocabulary_projection.float_matrix.
"""
import contextlib
import warnings

import keras
from keras.quantizers import Int8QuantizationConfig

from kerasllm.errors import KerasLLMError
from kerasllm.layers.matmul_einsum_dense import MatmulEinsumDense

INT8 = "int8"
MODES = (INT8,)
# The layer types whose kernels are quantized (MatmulEinsumDense is an EinsumDense).
QUANTIZED_LAYERS = (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.Embedding)


class QuantizationError(KerasLLMError, ValueError):
    """A quantization kerasllm does not export, or a model that cannot take it."""


def check_mode(mode, source="quantize"):
    """`mode` if kerasllm exports it (None: no quantization), else QuantizationError
    naming the supported ones; `source` names the argument or flag in the message."""
    if mode is None or mode in MODES:
        return mode
    raise QuantizationError(
        f"{source}={mode} is not supported; use {' or '.join(MODES)} (weight-only, "
        "for the dense and embedding kernels), or leave it unset for float weights")


def adapted_layers(model):
    """The paths of `model`'s layers that carry an unmerged LoRA adapter."""
    return [layer.path for layer in model._flatten_layers()
            if isinstance(layer, MatmulEinsumDense) and layer.adapter is not None]


@contextlib.contextmanager
def _without_numpy_copy_warning():
    # Keras' quantizer converts each TensorFlow variable with np.array(copy=False),
    # which NumPy 2 answers with one DeprecationWarning per layer: noise to a user.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept")
        yield


def quantize(model, mode=INT8):
    """Quantizes `model` (a built Keras model) in place to `mode` with
    `model.quantize`, weights only. Returns the model.

    Raises QuantizationError for a mode other than int8, a model already
    quantized, or one with unmerged LoRA adapters (merge_lora() first: the
    adapters' update would otherwise be dropped from the int8 layers).
    """
    check_mode(mode)
    adapted = adapted_layers(model)
    if adapted:
        raise QuantizationError(
            f"{model.name} has unmerged LoRA adapters ({len(adapted)} layers, e.g. "
            f"{adapted[0]}): call merge_lora() before quantizing")
    if any(layer.quantization_mode is not None for layer in model._flatten_layers()):
        raise QuantizationError(f"{model.name} is quantized already")
    seen = set()

    def once(layer):
        # A tied table is reachable through two parents (e.g. BERT's masked-LM
        # head); Keras would quantize it twice and fail the second time.
        if not isinstance(layer, QUANTIZED_LAYERS) or id(layer) in seen:
            return False
        seen.add(id(layer))
        return True

    with _without_numpy_copy_warning():
        # activation_quantizer=None: weight-only. Keras' int8 default would also
        # quantize every layer's inputs, per call.
        model.quantize(config=Int8QuantizationConfig(activation_quantizer=None),
                       filters=once)
    return model


def quantized_copy(task, mode=INT8):
    """A copy of `task` (a built TaskModel) with its weights and tokenizer, LoRA
    adapters merged into the copy's kernels, quantized to `mode`: what
    `task.export(..., quantize=mode)` writes, leaving the caller's model float
    (quantization cannot be undone)."""
    check_mode(mode)
    copy = type(task).from_config(task.get_config()).build_for_inputs()
    copy.set_weights(task.get_weights())  # built alike, so in the same order
    copy.tokenizer = task.tokenizer
    copy.merge_lora()
    return quantize(copy, mode)
