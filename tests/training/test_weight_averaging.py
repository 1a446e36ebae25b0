"""The exponential moving average of the weights (--ema_momentum): what is
evaluated and returned, and kept across a resume."""
import keras
import numpy as np

from kerasllm.training.optimizer import averaged_weights

from tests.training.helpers import run, task_and_optimizer, tiny_task


def test_averaged_weights_hold_the_average_inside_the_block_only():
    _, optimizer, variables = task_and_optimizer(learning_rate=0.1, clip_norm=0.0,
                                                 ema_momentum=0.5)
    after_step = []
    for _ in range(3):
        optimizer.apply([keras.ops.ones_like(v) for v in variables], variables)
        after_step.append([v.numpy() for v in variables])
    # The first step's weights start the average; each later step moves it halfway.
    expected = [0.25 * a + 0.25 * b + 0.5 * c for a, b, c in zip(*after_step)]
    with averaged_weights(optimizer, variables):
        for variable, value in zip(variables, expected):
            np.testing.assert_allclose(variable.numpy(), value, rtol=1e-5, atol=1e-7)
    for variable, value in zip(variables, after_step[-1]):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_without_an_average_nothing_changes():
    _, optimizer, variables = task_and_optimizer()
    optimizer.apply([keras.ops.ones_like(v) for v in variables], variables)
    before = [v.numpy() for v in variables]
    with averaged_weights(optimizer, variables):
        for variable, value in zip(variables, before):
            np.testing.assert_array_equal(variable.numpy(), value)


def first_kernel(task):
    return next(v for v in task.trainable_variables if v.path.endswith("kernel")).numpy()


def test_loop_evaluates_and_returns_the_average_and_resumes_it(tmp_path):
    tasks, seen = [], []

    def build():
        tasks.append(tiny_task())
        return tasks[-1]

    def on_log(step, metrics):
        seen.append(first_kernel(tasks[-1]))

    # A constant learning rate, so that 10 steps and then 10 more are the same 20 steps.
    settings = {"train_steps": 20, "checkpoint_every": 10, "log_every": 10,
                "warmup_steps": 0, "end_learning_rate_fraction": 1.0}
    plain, _ = run(tmp_path / "plain", **settings)
    straight, _ = run(tmp_path / "straight", build_task=build, ema_momentum=0.9,
                      on_log=on_log, **settings)
    averaged = first_kernel(straight.task)
    np.testing.assert_array_equal(seen[-1], averaged)  # on_log saw what is returned
    assert np.abs(averaged - first_kernel(plain.task)).max() > 1e-4

    run(tmp_path / "resumed", ema_momentum=0.9, **{**settings, "train_steps": 10})
    resumed, _ = run(tmp_path / "resumed", ema_momentum=0.9, **settings)
    for a, b in zip(straight.task.trainable_variables, resumed.task.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.path)
