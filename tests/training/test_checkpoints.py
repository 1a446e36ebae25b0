"""Resuming from model_dir, and refusing checkpoints that do not fit."""
import hashlib
import os
import shutil

import numpy as np
import pytest

from kerasllm.models import BertPretrainer
from kerasllm.errors import CheckpointError

from tests.training.helpers import SEQ, VOCAB, run


def snapshot(directory):
    """Every file under `directory` with a hash of its bytes."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return files


@pytest.fixture
def model_dir(baseline, tmp_path):
    """A private copy of the baseline run's model_dir."""
    copy = tmp_path / "model"
    shutil.copytree(baseline[0], copy)
    return copy


def test_resume_continues_from_the_saved_step(baseline, model_dir):
    assert {"ckpt-10.index", "ckpt-20.index", "ckpt-30.index", "checkpoint"} <= set(
        os.listdir(model_dir))
    again, logged = run(model_dir, train_steps=30)
    assert again.step == 30 and logged == []
    for saved, restored in zip(baseline[1].task.weights, again.task.weights):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())
    more, logged = run(model_dir, train_steps=34, log_every=2)
    assert [step for step, _ in logged] == [32, 34]
    assert more.step == 34 and int(more.optimizer.iterations) == 34
    assert "ckpt-34.index" in os.listdir(model_dir)


@pytest.mark.parametrize("overrides", [{"vocab_size": VOCAB + 16}, {"num_layers": 1}],
                         ids=["other_vocab", "fewer_layers"])
def test_checkpoint_of_another_model_is_refused_and_kept(model_dir, overrides):
    before = snapshot(model_dir)

    def other_model():
        return BertPretrainer.from_name(
            "bert_tiny", **{"vocab_size": VOCAB, "max_sequence_length": SEQ, **overrides})

    with pytest.raises(CheckpointError, match=f"{model_dir}.*new --model_dir"):
        run(model_dir, build_task=other_model, train_steps=10)
    assert snapshot(model_dir) == before


@pytest.mark.parametrize("suffix", ["index", "data-00000-of-00001"])
def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(model_dir, suffix, caplog):
    """A crash while ckpt-30 was written: the run resumes at 20 and says so."""
    path = model_dir / f"ckpt-30.{suffix}"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result, logged = run(model_dir, train_steps=30)
    assert [step for step, _ in logged] == [30]  # steps 21-30 trained again
    assert result.step == 30
    assert f"skipping checkpoint {model_dir}/ckpt-30" in caplog.text
    assert f"resuming from {model_dir}/ckpt-20" in caplog.text


def test_every_checkpoint_damaged_is_refused_and_kept(model_dir):
    for name in os.listdir(model_dir):
        if ".data-" in name:
            (model_dir / name).write_bytes(b"\0" * 64)
    before = snapshot(model_dir)
    with pytest.raises(CheckpointError, match=f"every checkpoint in {model_dir} is damaged"):
        run(model_dir, train_steps=40)
    assert snapshot(model_dir) == before
