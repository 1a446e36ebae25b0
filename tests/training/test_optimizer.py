import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.training.config import TrainConfig
from kerasllm.training.errors import TrainingError
from kerasllm.training.optimizer import create_optimizer, layer_biases
from kerasllm.training.schedule import WarmupDecay

from tests.training.helpers import task_and_optimizer


def test_linear_warmup_then_linear_decay():
    schedule = WarmupDecay(1e-3, warmup_steps=10, total_steps=110)
    values = [float(schedule(s)) for s in (0, 5, 10, 60, 110, 200)]
    np.testing.assert_allclose(values, [0, 5e-4, 1e-3, 5e-4, 0, 0], atol=1e-9)


def test_cosine_decay_to_end_fraction():
    schedule = WarmupDecay(1e-3, warmup_steps=0, total_steps=100, decay="cosine",
                           end_fraction=0.1)
    np.testing.assert_allclose(
        [float(schedule(s)) for s in (0, 50, 100)], [1e-3, 0.55e-3, 1e-4], rtol=1e-5)
    assert WarmupDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()


def test_weight_decay_skips_vectors_whatever_their_name():
    """LayerNorm gamma/beta and a norm's `scale` (as RMSNorm names it) are vectors,
    and every bias, also the attention's [heads, head_size] ones, is one at heart:
    they keep their values; matrices and tables decay."""
    task, optimizer, variables = task_and_optimizer(learning_rate=0.1, weight_decay=0.5,
                                                 clip_norm=0.0)
    variables = [*variables, keras.Variable(np.ones(4, "float32"), name="scale")]
    optimizer.build(variables)
    before = {v.path: v.numpy() for v in variables}
    # Zero gradients leave Adam's update at 0: what moves is weight decay alone.
    optimizer.apply([keras.ops.zeros_like(v) for v in variables], variables)
    decayed, kept = set(), set()
    for v in variables:
        if np.allclose(v.numpy(), before[v.path]):
            kept.add(v.path)
        else:
            np.testing.assert_allclose(v.numpy(), before[v.path] * (1 - 0.1 * 0.5), rtol=1e-5)
            decayed.add(v.path)
    biases = {b.path for b in layer_biases(task)}
    assert any(p.endswith("attention/query/bias") for p in biases)
    assert kept == {v.path for v in variables if len(v.shape) < 2} | biases
    assert "scale" in kept and any(p.endswith("gamma") for p in kept)
    assert any(p.endswith("token_embedding/embeddings") for p in decayed)
    # LayerNorm scale and offset, dense biases and the MLM head's output_bias.
    assert {p.rsplit("/", 1)[-1] for p in kept} == {"bias", "gamma", "beta", "output_bias",
                                                     "scale"}
    assert all(p.endswith(("kernel", "embeddings")) for p in decayed)
    assert any("token_embedding" in p for p in decayed)


def test_config_errors_name_the_setting():
    with pytest.raises(TrainingError, match="grad_accum_steps 3"):
        TrainConfig(model_dir="x", train_steps=10, global_batch_size=8, grad_accum_steps=3)
    with pytest.raises(TrainingError, match="model_dir is empty"):
        TrainConfig(model_dir="", train_steps=10, global_batch_size=8)
    with pytest.raises(TrainingError, match="warmup_steps"):
        TrainConfig(model_dir="x", train_steps=10, global_batch_size=8, warmup_steps=11)
    with pytest.raises(TrainingError, match="mixed_precision"):
        TrainConfig(model_dir="x", train_steps=10, global_batch_size=8,
                    mixed_precision="float8")


def test_schedule_survives_keras_serialization():
    schedule = WarmupDecay(1e-3, warmup_steps=5, total_steps=50, decay="cosine")
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, WarmupDecay)
    np.testing.assert_allclose(float(restored(20)), float(schedule(20)))


def test_clipping_and_float16_loss_scaling():
    base = TrainConfig(model_dir="unused", train_steps=10, global_batch_size=8)
    assert create_optimizer(base).global_clipnorm == 1.0
    assert create_optimizer(base.replace(clip_norm=0.0)).global_clipnorm is None
    scaled = create_optimizer(base.replace(mixed_precision="mixed_float16"))
    assert isinstance(scaled, keras.optimizers.LossScaleOptimizer)
    assert not isinstance(create_optimizer(base.replace(mixed_precision="mixed_bfloat16")),
                          keras.optimizers.LossScaleOptimizer)


def test_layer_decay_scales_each_layers_step():
    task, optimizer, variables = task_and_optimizer(learning_rate=0.1, weight_decay=0.0,
                                                    clip_norm=0.0, layer_decay=0.5)
    encoder, top = task.backbone, task.backbone.config.num_layers + 1
    before = [v.numpy() for v in variables]
    # Adam's first step moves every weight by the learning rate times sign(gradient).
    optimizer.apply([keras.ops.ones_like(v) for v in variables], variables)
    steps = {v.path: float(np.mean(b - v.numpy())) for v, b in zip(variables, before)}
    depths = {v.path: encoder.layer_depth(v) for v in variables}
    for path, step in steps.items():
        depth = top if depths[path] is None else depths[path]
        np.testing.assert_allclose(step, 0.1 * 0.5 ** (top - depth), rtol=1e-4, err_msg=path)
    assert {depths[p] for p in steps if "token_embedding" in p} == {0}
    assert {depths[p] for p in steps if "block_0" in p} == {1}
    assert any(depths[p] is None for p in steps)  # the MLM/NSP heads: full rate


def test_layer_decay_needs_an_encoder():
    with pytest.raises(TrainingError, match="need a task with a backbone"):
        create_optimizer(TrainConfig(model_dir="x", train_steps=10, global_batch_size=8,
                                     layer_decay=0.8), keras.layers.Dense(2))
    with pytest.raises(TrainingError, match="layer_decay must be in"):
        TrainConfig(model_dir="x", train_steps=10, global_batch_size=8, layer_decay=0.0)


@pytest.mark.parametrize("gradient_scale", [1e-3, 10.0])  # under and over clip_norm
def test_fused_steps_equal_keras_adamw(gradient_scale):
    """Three steps of our optimizer (fused Adam kernel, its own clipping) against
    Keras' AdamW with the same settings, on the same variables and gradients,
    including an embedding's sparse gradient with a repeated row."""
    config = TrainConfig(model_dir="unused", train_steps=10, global_batch_size=8,
                         learning_rate=0.01, warmup_steps=2, weight_decay=0.1,
                         clip_norm=1.0, ema_momentum=0.9)
    ours = create_optimizer(config)
    reference = keras.optimizers.AdamW(
        learning_rate=WarmupDecay(0.01, 2, 10), weight_decay=0.1, epsilon=config.adam_epsilon,
        global_clipnorm=1.0, use_ema=True, ema_momentum=0.9)
    reference.exclude_from_weight_decay(var_names=["bias"])
    rng = np.random.default_rng(0)
    initial = {"embeddings": rng.normal(size=(6, 4)), "kernel": rng.normal(size=(4, 3)),
               "bias": rng.normal(size=(3,))}
    runs = []
    for optimizer in (ours, reference):
        variables = [keras.Variable(value.astype("float32"), name=name)
                     for name, value in initial.items()]
        optimizer.build(variables)
        for step in range(3):
            step_rng = np.random.default_rng(step)
            rows = tf.IndexedSlices(
                tf.constant(step_rng.normal(size=(3, 4)) * gradient_scale, tf.float32),
                tf.constant([1, 4, 1]), tf.constant([6, 4]))
            dense = [tf.constant(step_rng.normal(size=v.shape) * gradient_scale, tf.float32)
                     for v in variables[1:]]
            optimizer.apply([rows, *dense], variables)
        averages = [a.numpy() for a in optimizer._model_variables_moving_average]
        runs.append(([v.numpy() for v in variables], averages))
    for got, want in zip(runs[0], runs[1]):
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_clipping_takes_sparse_gradients_in_a_graph():
    """A Keras model's fit hands an embedding's gradient over as IndexedSlices inside
    a tf.function, where clipping's tf.cond returns one type from both branches."""
    optimizer = create_optimizer(TrainConfig(model_dir="unused", train_steps=10,
                                             global_batch_size=8, learning_rate=0.01,
                                             warmup_steps=0, clip_norm=1.0))
    table = keras.Variable(np.zeros((6, 4), "float32"))
    optimizer.build([table])
    rows = tf.IndexedSlices(tf.fill([2, 4], 10.0), tf.constant([1, 4]), tf.constant([6, 4]))
    tf.function(lambda: optimizer.apply([rows], [table]))()
    assert (np.abs(table.numpy()).sum(1) > 0).tolist() == [False, True, False, False, True,
                                                             False]
