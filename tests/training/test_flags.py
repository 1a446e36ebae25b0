"""The trainers' shared training flags: defaults, parsing into a TrainConfig, clear errors."""
import pytest
from absl import flags

from kerasllm.training.config import TrainConfig
from trainers.shared_flags import define_training_flags, train_config_from_flags


def parsed(*argv, **defaults):
    flag_values = flags.FlagValues()
    define_training_flags(flag_values, **defaults)
    flag_values(["trainer", *argv])
    return flag_values


def test_flags_become_a_train_config():
    flag_values = parsed("--model_dir=/tmp/run", "--train_steps=500", "--batch_size=64",
                         "--grad_accum_steps=4", "--decay=cosine",
                         "--mixed_precision=mixed_bfloat16", "--jit_compile",
                         "--strategy=mirrored", "--layer_decay=0.8", "--adam_epsilon=1e-8")
    config = train_config_from_flags(flag_values, end_learning_rate_fraction=0.1)
    assert config == TrainConfig(
        model_dir="/tmp/run", train_steps=500, global_batch_size=64, grad_accum_steps=4,
        decay="cosine", mixed_precision="mixed_bfloat16", jit_compile=True,
        end_learning_rate_fraction=0.1, layer_decay=0.8, adam_epsilon=1e-8)
    assert flag_values.strategy == "mirrored"


def test_trainer_defaults_and_overrides():
    flag_values = parsed("--warmup_steps=10", model_dir="model_dirs/x", learning_rate=3e-5)
    config = train_config_from_flags(flag_values, train_steps=20)
    assert (config.model_dir, config.learning_rate, config.num_warmup_steps,
            config.train_steps) == ("model_dirs/x", 3e-5, 10, 20)


@pytest.mark.parametrize("argv, warmup", [
    (["--train_steps=5"], 0), (["--train_steps=50"], 5), ([], 100),
    (["--train_steps=5", "--warmup_steps=5"], 5)])
def test_the_default_warmup_follows_the_steps(argv, warmup):
    """A run of 5 steps needs no --warmup_steps: unset, it is 10% of the run."""
    config = train_config_from_flags(parsed(*argv, model_dir="x", train_steps=1000))
    assert config.num_warmup_steps == warmup
    assert train_config_from_flags(parsed(*argv, model_dir="x"), train_steps=30) \
        .num_warmup_steps == (warmup if "--warmup_steps=5" in argv else 3)


@pytest.mark.parametrize("argv, message", [
    (["--mixed_precision=float8"], "mixed_precision"),
    (["--decay=step"], "decay"),
    (["--train_steps=0"], "train_steps"),
    (["--train_steps=10", "--warmup_steps=20"], "--warmup_steps must not exceed"),
    (["--batch_size=10", "--grad_accum_steps=4"], "--grad_accum_steps must divide"),
    (["--strategy=tpu"], "--strategy=tpu needs --tpu"),
    (["--strategy=gpu"], "strategy"),
])
def test_bad_values_are_flag_errors(argv, message):
    with pytest.raises(flags.Error, match=message):
        parsed(*argv)
