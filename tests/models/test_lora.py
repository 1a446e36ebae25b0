"""LoRA: adapters beside frozen weights, only they train (and only they are
checkpointed), and merging them gives a plain model with the same outputs."""
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasllm
from kerasllm.layers.matmul_einsum_dense import MatmulEinsumDense
from kerasllm.models import GptCausalLM, GptDecoder, registry
from kerasllm.models.lora import LoraError, lora_layers
from kerasllm.training.config import TrainConfig
from kerasllm.training.loop import train
from tests.models import text_tasks


def tiny(name="llama_tiny", **overrides):
    kerasllm.set_random_seed(3)
    config = registry.get(name).replace(vocab_size=300, dropout=0.0, **overrides)
    return GptCausalLM(GptDecoder(config)).build_for_inputs()


def batch(rows=4, length=12, seed=0):
    ids = np.random.default_rng(seed).integers(3, 300, (rows, length)).astype("int32")
    return {"token_ids": ids, "padding_mask": np.ones_like(ids)}


def randomize_adapters(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in lora_layers(model):
        layer.adapter.b.assign(rng.normal(0, 0.05, layer.adapter.b.shape))


@pytest.mark.parametrize("name", ["llama_tiny", "gpt_tiny"])
def test_targets_all_adapts_every_linear_layer_and_freezes_the_rest(name):
    model = tiny(name)
    before = model(batch())["logits"]
    model.enable_lora(4, targets="all")
    adapted = lora_layers(model)
    linear = [layer for layer in model._flatten_layers() if isinstance(layer, MatmulEinsumDense)]
    assert adapted and len(adapted) == len(linear)
    # Only the adapters train (the tied or untied vocabulary projection stays frozen).
    assert model.trainable_variables
    assert all("/lora/" in v.path for v in model.trainable_variables)
    # A new adapter (B = 0) changes nothing.
    np.testing.assert_array_equal(model(batch())["logits"], before)


def test_default_targets_are_the_attention_projections_and_norms_can_train():
    model = tiny()
    settings = model.enable_lora(2, alpha=4, train_norms=True)
    paths = {layer.path.rsplit("/", 1)[1] for layer in lora_layers(model)}
    assert paths == {"query", "key", "value", "output"}
    assert settings.alpha == 4.0 and settings.targets == "attention"
    assert any("norm" in v.path for v in model.trainable_variables)


def test_merged_model_equals_the_unmerged_one_and_is_plain():
    plain_weights = len(tiny().weights)
    model = tiny()
    model.enable_lora(4, targets="all")
    randomize_adapters(model)
    unmerged = model(batch())["logits"]
    model.merge_lora()
    assert not lora_layers(model) and len(model.weights) == plain_weights
    np.testing.assert_allclose(model(batch())["logits"], unmerged, atol=2e-5)
    assert len(model.trainable_variables) == plain_weights


def test_only_adapters_change_in_training_and_only_they_are_checkpointed(tmp_path):
    base = tiny()
    frozen = {v.path: v.numpy() for v in base.weights}

    def build_task():
        task = tiny()
        task.enable_lora(4, dropout=0.1)
        return task

    data = tf.data.Dataset.from_tensors(batch()).repeat()
    config = TrainConfig(model_dir=str(tmp_path), train_steps=3, global_batch_size=4,
                         learning_rate=1e-2, checkpoint_every=3, log_every=1)
    result = train(build_task, lambda context, start_batch=0: data, config,
                   tf.distribute.get_strategy())
    for variable in result.task.weights:
        if variable.path in frozen:
            np.testing.assert_array_equal(variable.numpy(), frozen[variable.path],
                                          err_msg=variable.path)
    assert any(np.any(layer.adapter.b.numpy()) for layer in lora_layers(result.task))
    # Adam's moments exist for the adapters only.
    assert len(result.optimizer.variables) < 3 * len(result.task.weights)
    saved = [name for name, _ in tf.train.list_variables(tf.train.latest_checkpoint(tmp_path))
             if name.startswith("task/")]
    adapter_count = 2 * len(lora_layers(result.task))
    assert len([n for n in saved if n.endswith("VARIABLE_VALUE")]) == adapter_count
    size = sum(os.path.getsize(tmp_path / name) for name in os.listdir(tmp_path)
               if name.startswith("ckpt-3"))
    assert size < sum(v.numpy().nbytes for v in base.weights) / 4


def test_resuming_from_an_adapter_checkpoint_equals_an_uninterrupted_run(tmp_path):
    def build_task():
        task = tiny()
        task.enable_lora(4, dropout=0.1)
        return task

    def run(model_dir, steps):
        # A constant rate: the schedule must not depend on where a run ends.
        config = TrainConfig(model_dir=str(model_dir), train_steps=steps, global_batch_size=4,
                             learning_rate=1e-2, warmup_steps=0,
                             end_learning_rate_fraction=1.0, checkpoint_every=2, log_every=1,
                             deterministic=True)
        return train(build_task, lambda context, start_batch=0: tf.data.Dataset.range(
            start_batch, 10**6).map(lambda i: batch(seed=0)), config,
            tf.distribute.get_strategy()).task

    straight = run(tmp_path / "straight", 4)
    run(tmp_path / "resumed", 2)
    resumed = run(tmp_path / "resumed", 4)
    for a, b in zip(straight.trainable_variables, resumed.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_lora_model_saves_and_loads_as_a_keras_file(tmp_path):
    model = text_tasks.gpt()
    model.enable_lora(2, targets="query,value")
    randomize_adapters(model)
    path = str(tmp_path / "lora.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert len(lora_layers(loaded)) == len(lora_layers(model))
    ids = {"token_ids": np.array([[5, 6, 7]], "int32"), "padding_mask": np.ones((1, 3), "int32")}
    np.testing.assert_allclose(loaded(ids)["logits"], model(ids)["logits"], atol=1e-6)
    assert loaded.generate("the king", max_new_tokens=4) == model.generate(
        "the king", max_new_tokens=4)


def test_settings_that_fit_no_layer_are_named_errors():
    model = tiny()
    with pytest.raises(LoraError, match="name no layer.*query"):
        model.enable_lora(2, targets="q_proj")
    with pytest.raises(LoraError, match="larger than .*use at most"):
        model.enable_lora(100_000)
    with pytest.raises(LoraError, match="rank must be >= 1"):
        model.enable_lora(0)
    model.enable_lora(2)
    with pytest.raises(LoraError, match="already"):
        model.enable_lora(2)


def test_fit_on_instruction_records_trains_the_adapters_on_the_replies():
    model = text_tasks.gpt()
    model.enable_lora(8, targets="all")
    records = [{"prompt": word, "response": "the king"} for word in text_tasks.WORDS[:8]]
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    batch = next(iter(model.text_dataset(records, batch_size=8)))
    # The replies alone are targets: " the king" and the end-of-text token.
    assert 8 * 2 <= int(tf.reduce_sum(batch["target_mask"])) <= 8 * 4
    before = model.evaluate(records, batch_size=8, verbose=0, return_dict=True)["loss"]
    model.fit(records, batch_size=4, epochs=8, verbose=0)
    after = model.evaluate(records, batch_size=8, verbose=0, return_dict=True)["loss"]
    # A random base's frozen table and final norm bound how peaked its logits get
    # (about 3.4 nats over 300 tokens at best), not LoRA: the greedy answers are right.
    assert after < 0.7 * before
    assert model.generate(model.chat_renderer().render(
        [{"role": "user", "content": "king"}], add_generation_prompt=True),
        max_new_tokens=3).strip() == "the king"
