"""The training loop on one device: learning, summaries, progress lines, the evaluation
hook, XLA, float16, accumulation."""
import glob
import logging
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.training.errors import TrainingError
from kerasllm.training.progress import Throughput, format_duration, format_progress
from kerasllm.training.step import count_tokens

from tests.training.helpers import run, tiny_task

def test_loss_falls_on_a_repeated_batch(baseline):
    _, result, logged = baseline
    assert [step for step, _ in logged] == [10, 20, 30]
    first, last = logged[0][1]["mlm_loss"], logged[-1][1]["mlm_loss"]
    assert last < 0.5 * first, (first, last)
    assert result.step == 30 and result.metrics == logged[-1][1]
    assert result.tokens_per_second > 0
    assert int(result.optimizer.iterations) == 30


def test_tensorboard_has_every_scalar(baseline):
    model_dir, _, _ = baseline
    tags = {}
    for path in glob.glob(os.path.join(model_dir, "train", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert set(tags) == {"loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy",
                         "gradient_norm", "learning_rate", "tokens_per_second",
                         "steps_per_second"}
    assert tags["loss"] == [10, 20, 30]


def test_xla_compiled_step_matches_plain_step(baseline, tmp_path):
    _, _, plain = baseline
    _, compiled = run(tmp_path, jit_compile=True)
    np.testing.assert_allclose([m["loss"] for _, m in compiled],
                               [m["loss"] for _, m in plain], rtol=1e-2)


def test_gradient_accumulation_equals_one_large_batch(tmp_path):
    # A large Adam epsilon makes the update proportional to the gradient, so a
    # wrongly scaled or wrongly summed accumulation shows up in the weights.
    settings = dict(train_steps=2, warmup_steps=2, adam_epsilon=10.0, learning_rate=1.0,
                    clip_norm=0.0, log_every=1)
    whole, _ = run(tmp_path / "whole", **settings)
    accumulated, _ = run(tmp_path / "accumulated", grad_accum_steps=4, **settings)
    for a, b in zip(whole.task.weights, accumulated.task.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5, err_msg=a.path)
    initial = tiny_task().build_for_inputs()
    assert not np.allclose(initial.weights[0].numpy(), whole.task.weights[0].numpy())
    # The schedule follows optimizer steps, not micro-batches: 2 of 2 warmup steps.
    assert int(accumulated.optimizer.iterations) == 2
    assert float(accumulated.optimizer.learning_rate) == pytest.approx(1.0)


def test_mixed_float16_with_loss_scaling(tmp_path):
    result, logged = run(tmp_path, train_steps=10, log_every=5, mixed_precision="mixed_float16")
    assert result.task.backbone.compute_dtype == "float16"
    assert isinstance(result.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(logged[-1][1]["loss"])
    assert logged[-1][1]["mlm_loss"] < logged[0][1]["mlm_loss"]
    # The policy applied to the task only; the global one is put back.
    assert keras.config.dtype_policy().name == "float32"


def test_unwritable_model_dir_fails_before_building_anything(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")

    def must_not_build():
        raise AssertionError("the task was built")

    with pytest.raises(TrainingError, match="cannot write to model_dir .*a_file"):
        run(blocker / "model", build_task=must_not_build)


def test_batch_that_does_not_split_over_accumulation_steps(tmp_path):
    with pytest.raises(TrainingError, match="grad_accum_steps 3"):
        run(tmp_path, grad_accum_steps=3)


def test_tokens_count_real_tokens():
    mask = tf.constant([[1, 1, 0], [1, 0, 0]])
    assert float(count_tokens({"token_ids": tf.ones_like(mask), "padding_mask": mask})) == 3
    assert float(count_tokens({"encoder_padding_mask": mask,
                               "decoder_padding_mask": tf.ones_like(mask)})) == 9
    assert float(count_tokens({"token_ids": tf.ones((2, 5))})) == 10
    with pytest.raises(TrainingError, match="token_ids or a padding_mask"):
        count_tokens({"pixels": tf.ones((2, 5))})


def test_progress_line():
    line = format_progress(120, 500, {"mlm_accuracy": 0.1, "loss": 6.21}, 9.6e-5,
                           Throughput(1850.4, 12.34, False), elapsed=42.2, eta=133)
    assert line == ("step 120/500  loss 6.210  mlm_accuracy 0.100  lr 9.6e-05  1850 tok/s  "
                    "12.3 steps/s  elapsed 0:42  ETA 2:13")
    first = format_progress(1, 500, {"loss": 6.5}, 1e-5, Throughput(90.0, 0.5, True), 3.0)
    assert first.endswith("90 tok/s  0.5 steps/s (with tracing)  elapsed 0:03")
    assert format_duration(3723.4) == "1:02:03"


def test_the_tracing_step_is_left_out_of_the_throughput(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="absl")  # an earlier test may have quietened absl
    run(tmp_path, train_steps=4, log_every=1, steps_per_loop=3)
    lines = [line for line in caplog.text.splitlines() if "tok/s" in line]
    assert len(lines) == 4
    assert "(with tracing)" in lines[0] and "ETA" not in lines[0]
    assert all("(with tracing)" not in line and "ETA" in line for line in lines[1:])
    assert "tracing the training step" in caplog.text


def test_the_evaluation_hook_sees_the_task_and_the_training_time(tmp_path):
    points = []
    result, _ = run(tmp_path, on_evaluate=points.append, eval_every=15)
    assert [p.step for p in points] == [15, 30]  # every 15 steps, and the last
    assert all(p.task is result.task and p.start_step == 0 for p in points)
    assert 0 < points[0].train_seconds < points[1].train_seconds == result.train_seconds
    assert points[1].metrics == result.metrics

    # A resumed run counts on from the time recorded with the checkpoint it resumed from.
    more, _ = run(tmp_path, on_evaluate=points.append, eval_every=15, train_steps=40)
    assert [p.step for p in points[2:]] == [40] and points[2].start_step == 30
    assert points[2].train_seconds > points[1].train_seconds
    assert more.start_step == 30 and more.step == 40
    # Nothing left to do: the recorded time and metrics, no evaluation.
    again, _ = run(tmp_path, on_evaluate=points.append, train_steps=40)
    assert len(points) == 3 and again.start_step == again.step == 40
    assert again.train_seconds == more.train_seconds and again.metrics == more.metrics
