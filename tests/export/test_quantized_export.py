"""int8 exports (kerasllm.models.quantization): on tiny models, the quantized export
passes the serving check, its variables take under 0.3x the float32 export's
bytes, and its outputs stay close to the float model's; an unsupported mode is a
one-line error naming int8; LoRA adapters are merged into a quantized copy, never
dropped."""
import os

import keras
import numpy as np
import pytest

import kerasllm
from kerasllm.layers.matmul_einsum_dense import MatmulEinsumDense, dense
from kerasllm.models import quantization
from tests.models import text_tasks
from tests.trainers.trainer_runs import Trainer

TEXTS = ["the king and queen lived in a castle", "a dog far away", "the cat"]
# Weight-only int8 of random tiny models: per-channel rounding moves a log
# probability summed over a text by well under this, and a probability by less
# than PROBABILITY_TOLERANCE.
LOG_PROBABILITY_TOLERANCE = 0.05
PROBABILITY_TOLERANCE = 0.01


def variables_bytes(path):
    """Bytes of a SavedModel's variables/ (the weights; the graph is the same size)."""
    folder = os.path.join(path, "variables")
    return sum(os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder))


def kernel_dtypes(model):
    return {variable.path: variable.dtype for variable in model.weights
            if variable.path.endswith(("/kernel", "/embeddings"))}


def test_int8_gpt_export_is_checked_smaller_and_close(tmp_path):
    model = text_tasks.gpt()
    float_path = model.export(str(tmp_path / "float"), max_new_tokens=4)
    int8_path = model.export(str(tmp_path / "int8"), max_new_tokens=4, quantize="int8")
    # export() checked both as TF Serving loads them; the caller's model stays float.
    assert set(kernel_dtypes(model).values()) == {"float32"}
    # Each weight saved once (Keras' ExportArchive.track of the model saved a second copy).
    assert variables_bytes(float_path) < 1.1 * sum(v.numpy().nbytes for v in model.weights)
    assert variables_bytes(int8_path) < 0.3 * variables_bytes(float_path)
    float_export, int8_export = kerasllm.export.load(float_path), kerasllm.export.load(int8_path)
    # score: the tied projection of the whole text; generate: the dequantized
    # decoding matrix, step by step.
    np.testing.assert_allclose(int8_export.score(text=TEXTS)["log_probability"],
                               float_export.score(text=TEXTS)["log_probability"],
                               atol=LOG_PROBABILITY_TOLERANCE)
    first_float = float_export.generate(prompt=TEXTS)["token_log_probs"][:, 0]
    first_int8 = int8_export.generate(prompt=TEXTS)["token_log_probs"][:, 0]
    np.testing.assert_allclose(first_int8, first_float, atol=LOG_PROBABILITY_TOLERANCE)


def test_int8_classifier_export_is_close_to_the_float_model(tmp_path):
    model = text_tasks.classifier()
    path = model.export(str(tmp_path / "int8"), quantize="int8")
    exported = kerasllm.export.load(path).classify(text=TEXTS)["probabilities"]
    np.testing.assert_allclose(exported, model.classify(TEXTS)["probabilities"],
                               atol=PROBABILITY_TOLERANCE)


def test_every_kernel_and_table_is_int8_with_the_tied_head_close():
    """BERT's masked-LM head reads the tied table that the embedding layer also
    owns: quantized once, and read dequantized."""
    model = text_tasks.pretrainer()
    inputs = model.dummy_inputs(8)
    before = keras.ops.convert_to_numpy(model(inputs)["mlm_logits"])
    quantization.quantize(model)
    assert set(kernel_dtypes(model).values()) == {"int8"}
    after = keras.ops.convert_to_numpy(model(inputs)["mlm_logits"])
    np.testing.assert_allclose(after, before, atol=0.02 * np.abs(before).max())


@pytest.mark.parametrize("equation, output_shape, input_shape", [
    ("...d,de->...e", (24,), (2, 5, 16)),      # dense(): Keras' "..." case
    ("btd,dnh->btnh", (5, 3, 8), (2, 5, 16)),  # split into heads
    ("btnh,nhd->btd", (5, 16), (2, 5, 3, 8)),  # merge heads
])
def test_matmul_einsum_dense_quantizes_as_einsum_dense(equation, output_shape, input_shape):
    layer = MatmulEinsumDense(equation, output_shape, bias_axes=equation[-1])
    inputs = np.random.default_rng(0).normal(size=input_shape).astype("float32")
    before = keras.ops.convert_to_numpy(layer(inputs))
    layer.quantize("int8")
    assert layer.kernel.dtype == "int8"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(inputs)), before,
                               atol=0.02 * np.abs(before).max())


def test_unmerged_adapters_are_an_error_and_a_copy_merges_them():
    model = text_tasks.gpt()
    model.enable_lora(4)
    for variable in model.trainable_variables:  # adapters that change the outputs
        if "lora" in variable.path:
            variable.assign(np.full(variable.shape, 0.05, "float32"))
    inputs = model.dummy_inputs(8)
    adapted = keras.ops.convert_to_numpy(model(inputs)["logits"])
    with pytest.raises(quantization.QuantizationError, match=r"unmerged LoRA adapters .*"
                       r"call merge_lora\(\) before quantizing"):
        quantization.quantize(model)
    copy = quantization.quantized_copy(model)
    assert not quantization.adapted_layers(copy) and quantization.adapted_layers(model)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(copy(inputs)["logits"]), adapted,
                               atol=0.02 * np.abs(adapted).max())


def test_a_layer_with_an_adapter_refuses_keras_quantize():
    layer = dense(8)
    layer.build((None, 4))
    layer.enable_lora(2)
    with pytest.raises(ValueError, match="merge_lora"):
        layer.quantize("int8")


def test_unsupported_modes_name_the_supported_one(tmp_path):
    with pytest.raises(quantization.QuantizationError,
                       match=r"^quantize=int4 is not supported; use int8 "):
        text_tasks.classifier().export(str(tmp_path), quantize="int4")
    message = Trainer("train_gpt").error("--quantize=float8", f"--model_dir={tmp_path / 'r'}")
    assert message.startswith("--quantize=float8 is not supported; use int8 ")


def test_an_unsupported_mode_is_one_line_before_any_work(tmp_path):
    trainer = Trainer("train_gpt")
    code, output = trainer.run_fresh("--quantize=int4", f"--model_dir={tmp_path / 'run'}",
                                     timeout=120)
    trainer.assert_one_line_error(code, output, "--quantize=int4 is not supported; use int8")
    assert not (tmp_path / "run").exists()
