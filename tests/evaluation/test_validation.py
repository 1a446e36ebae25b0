"""Validation: the history, the best weights within one process and across a resume,
TensorBoard, and the named error for a model_dir that keeps another score."""
import glob
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.evaluation.validation import (HISTORY_FILE, Validation, format_scores, merged,
                                            scores_of)
from kerasllm.training.errors import TrainingError
from kerasllm.training.loop import TrainPoint


def small_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.build((None, 3))
    return model


def scripted(scores, name="accuracy"):
    """A score function that returns the next value from `scores` on each call."""
    remaining = list(scores)
    return lambda model: {name: remaining.pop(0)}


def evaluate(validation, model, steps_and_weights, start_step=0):
    """Stands in for training: at each (step, value) every weight becomes `value`,
    then the validation scores the model."""
    for step, value in steps_and_weights:
        model.set_weights([np.full_like(w, value) for w in model.get_weights()])
        validation(TrainPoint(step, model, {}, 2.0 * step, start_step))


def weight_steps(model_dir):
    return sorted(int(os.path.basename(path)[len("step-"):-len(".index")])
                  for path in glob.glob(os.path.join(model_dir, "best", "step-*.index")))


def test_without_a_directory_the_best_is_known_and_nothing_written(tmp_path):
    validation = Validation(scripted([0.7, 0.9, 0.8]), "accuracy")
    evaluate(validation, small_model(), [(10, 1.0), (20, 2.0), (30, 3.0)])
    assert validation.best == {"step": 20, "train_seconds": 40.0, "accuracy": 0.9}
    assert [r["step"] for r in validation.records] == [10, 20, 30]
    assert not os.listdir(tmp_path)


def first_process(model_dir):
    """Scores steps 10 and 20 (0.7, then 0.9) into `model_dir`; returns the model."""
    model = small_model()
    evaluate(Validation(scripted([0.7, 0.9]), "accuracy", str(model_dir)), model,
             [(10, 1.0), (20, 2.0)])
    return model


def test_scores_of_an_earlier_process_compete_after_a_resume(tmp_path):
    model = first_process(tmp_path)
    assert weight_steps(tmp_path) == [10, 20]  # the best, and the best it replaced

    resumed = Validation(scripted([0.8]), "accuracy", str(tmp_path))
    evaluate(resumed, model, [(30, 3.0)], start_step=20)
    assert resumed.restore_best(model)["step"] == 20
    assert all(np.all(w == 2.0) for w in model.get_weights())  # read back from the file
    assert [r["step"] for r in resumed.records] == [10, 20, 30]
    assert weight_steps(tmp_path) == [10, 20]

    better = Validation(scripted([0.95]), "accuracy", str(tmp_path))
    evaluate(better, model, [(40, 4.0)], start_step=30)
    assert weight_steps(tmp_path) == [20, 40]
    saved = json.loads((tmp_path / HISTORY_FILE).read_text())
    assert saved["kept"] == [20, 40] and saved["metric"] == "accuracy"
    assert [r["train_seconds"] for r in saved["records"]] == [20.0, 40.0, 60.0, 80.0]


def test_scores_after_the_checkpoint_resumed_from_are_dropped(tmp_path):
    model = first_process(tmp_path)
    # The process died after scoring step 20 (the best) but before its checkpoint
    # was written: the resumed run is back at step 10, whose weights were kept.
    resumed = Validation(scripted([0.6]), "accuracy", str(tmp_path))
    evaluate(resumed, model, [(20, 5.0)], start_step=10)
    assert [(r["step"], r["accuracy"]) for r in resumed.records] == [(10, 0.7), (20, 0.6)]
    assert resumed.restore_best(model)["step"] == 10
    assert all(np.all(w == 1.0) for w in model.get_weights())
    assert weight_steps(tmp_path) == [10]


def test_a_crash_after_the_first_score_leaves_no_best(tmp_path):
    evaluate(Validation(scripted([0.7]), "accuracy", str(tmp_path)), small_model(),
             [(10, 1.0)])
    resumed = Validation(scripted([]), "accuracy", str(tmp_path))
    resumed.resume(0)
    assert resumed.records == [] and resumed.best is None
    assert resumed.restore_best(small_model()) is None


def test_a_loss_keeps_its_lowest_and_tensorboard_has_every_score(tmp_path):
    validation = Validation(merged(scripted([3.0, 2.0, 2.5], "loss"),
                                   scripted([1.0, 2.0, 3.0], "bleu")),
                            "loss", str(tmp_path), larger_is_better=False)
    evaluate(validation, small_model(), [(10, 1.0), (20, 2.0), (30, 3.0)])
    assert validation.best["step"] == 20 and scores_of(validation.best) == {"loss": 2.0,
                                                                            "bleu": 2.0}
    tags = {}
    for path in glob.glob(os.path.join(tmp_path, "validation", "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert tags == {"loss": [10, 20, 30], "bleu": [10, 20, 30]}


def test_a_model_dir_keeping_another_score_is_refused(tmp_path):
    first_process(tmp_path)
    with pytest.raises(TrainingError, match="keeps the weights with the best 'accuracy', not "
                                            "'f1'; use another --model_dir"):
        Validation(scripted([]), "f1", str(tmp_path))


def test_scores_read_as_one_line():
    assert format_scores({"accuracy": 0.81234, "perplexity": 137.42}) == \
        "accuracy 0.8123  perplexity 137.4"


def test_of_equal_scores_the_later_weights_are_kept(tmp_path):
    validation = Validation(scripted([0.5, 0.5, 0.4]), "accuracy", str(tmp_path))
    model = small_model()
    evaluate(validation, model, [(10, 1.0), (20, 2.0), (30, 3.0)])
    assert validation.restore_best(model)["step"] == 20
    assert weight_steps(tmp_path) == [10, 20]
