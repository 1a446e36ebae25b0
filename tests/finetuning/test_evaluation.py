"""EpochEvaluator: the best epoch's weights, within one process and across a resume."""
import os

import keras
import numpy as np

from kerasllm.finetuning.evaluation import EpochEvaluator


def small_model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.build((None, 3))
    return model


def scripted(scores):
    """A score function that returns the next accuracy from `scores` on each call."""
    remaining = list(scores)
    return lambda model: {"accuracy": remaining.pop(0)}


def train_epoch(model, value):
    """Stands in for an epoch of training: every weight becomes `value`."""
    model.set_weights([np.full_like(w, value) for w in model.get_weights()])


def run_epochs(evaluator, model, first_epoch, weight_values):
    for epoch, value in enumerate(weight_values, start=first_epoch):
        train_epoch(model, value)
        evaluator.end_of_epoch(epoch, model)


def test_in_memory_keeps_the_best_epoch():
    model = small_model()
    evaluator = EpochEvaluator(scripted([0.7, 0.9, 0.8]), "accuracy")
    run_epochs(evaluator, model, 1, [1.0, 2.0, 3.0])
    assert evaluator.restore_best(model) == (2, {"accuracy": 0.9})
    assert all(np.all(w == 2.0) for w in model.get_weights())
    assert [epoch for epoch, _ in evaluator.history] == [1, 2, 3]


def first_process(directory):
    """Scores epochs 1 and 2 (0.7, then 0.9) into `directory`; returns the model."""
    model = small_model()
    run_epochs(EpochEvaluator(scripted([0.7, 0.9]), "accuracy", directory=str(directory)),
               model, 1, [1.0, 2.0])
    return model


def test_epochs_of_an_earlier_process_compete_after_a_resume(tmp_path):
    model = first_process(tmp_path)

    resumed = EpochEvaluator(scripted([0.8]), "accuracy", directory=str(tmp_path),
                             completed_epochs=2)
    assert resumed.best == (2, {"accuracy": 0.9})
    run_epochs(resumed, model, 3, [3.0])
    assert resumed.restore_best(model) == (2, {"accuracy": 0.9})
    assert all(np.all(w == 2.0) for w in model.get_weights())  # read back from the file
    assert resumed.history == [(1, {"accuracy": 0.7}), (2, {"accuracy": 0.9}),
                               (3, {"accuracy": 0.8})]

    assert weight_files(tmp_path) == [2]  # epoch 1's were kept while epoch 2 was new

    better = EpochEvaluator(scripted([0.95]), "accuracy", directory=str(tmp_path),
                            completed_epochs=3)
    run_epochs(better, model, 4, [4.0])
    assert weight_files(tmp_path) == [2, 4]  # the best, and the best it replaced


def weight_files(directory):
    return sorted(int(name[len("best_epoch-"):-len(".weights.h5")])
                  for name in os.listdir(directory) if name.endswith(".weights.h5"))


def test_epochs_scored_after_the_resumed_checkpoint_are_dropped(tmp_path):
    model = first_process(tmp_path)
    assert weight_files(tmp_path) == [1, 2]

    # The process died after scoring epoch 2 (the best) but before its checkpoint
    # was written: the resumed run is back at epoch 1, whose weights were kept.
    resumed = EpochEvaluator(scripted([0.6]), "accuracy", directory=str(tmp_path),
                             completed_epochs=1)
    assert resumed.history == [(1, {"accuracy": 0.7})]
    assert resumed.best == (1, {"accuracy": 0.7})
    run_epochs(resumed, model, 2, [5.0])
    assert resumed.restore_best(model) == (1, {"accuracy": 0.7})
    assert all(np.all(w == 1.0) for w in model.get_weights())
    assert weight_files(tmp_path) == [1]


def test_a_crash_after_the_first_score_leaves_no_best_epoch(tmp_path):
    run_epochs(EpochEvaluator(scripted([0.7]), "accuracy", directory=str(tmp_path)),
               small_model(), 1, [1.0])
    resumed = EpochEvaluator(scripted([]), "accuracy", directory=str(tmp_path),
                             completed_epochs=0)
    assert resumed.history == [] and resumed.best is None


def test_an_empty_directory_starts_with_no_best_epoch(tmp_path):
    assert EpochEvaluator(scripted([]), "accuracy", directory=str(tmp_path)).best is None
