"""The task models as Keras models: compile(optimizer) and fit/evaluate on raw text
with each task's own loss, the same loss the training loop computes, and .keras
files that carry the tokenizer."""
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasllm.errors import KerasLLMError
from kerasllm.models.task import NoTokenizerError
from tests.models import text_tasks

FAMILIES = {
    "gpt": (text_tasks.gpt, lambda: (list(text_tasks.lines()), None)),
    "seq2seq": (text_tasks.seq2seq, lambda: (tuple(text_tasks.pairs()), None)),
    "classifier": (text_tasks.classifier, lambda: text_tasks.labeled()),
    "bert_pretrainer": (text_tasks.pretrainer, lambda: (list(text_tasks.lines()), None)),
}
# The loss after two epochs, at most, as a share of the loss before: the lines are
# random words, so masked words (and which half follows which) are unpredictable
# past their frequencies, which is all MLM + NSP can learn here.
LOSS_AFTER_FIT = {"gpt": 0.8, "seq2seq": 0.8, "classifier": 0.8, "bert_pretrainer": 0.97}
# Adam's rate: the BERT classifier's loss at 3e-3 can climb in its second epoch
# (with some initialisations), a fine-tuning rate too high, not a fault of fit.
FIT_LEARNING_RATE = {"gpt": 3e-3, "seq2seq": 3e-3, "classifier": 1e-3, "bert_pretrainer": 3e-3}


def fit_data(family):
    x, y = FAMILIES[family][1]()
    return (x, y) if y is not None else (x, None)


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_on_raw_text_lowers_the_task_loss(family):
    model = FAMILIES[family][0]()
    x, y = fit_data(family)
    model.compile(optimizer=keras.optimizers.Adam(FIT_LEARNING_RATE[family]))
    before = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    after = model.evaluate(x, y, batch_size=64, verbose=0, return_dict=True)
    assert after["loss"] < LOSS_AFTER_FIT[family] * before["loss"], (before, after)
    assert history.history["loss"][1] < history.history["loss"][0]
    # The task's own metrics, not Keras' compiled ones.
    assert len(after) > 1 and all("accuracy" in name or "loss" in name or
                                  name == "perplexity" for name in after)


@pytest.mark.parametrize("family", FAMILIES)
def test_keras_reports_the_loss_the_training_loop_computes(family):
    model = FAMILIES[family][0]()
    x, y = fit_data(family)
    batch = next(iter(model.text_dataset(x, y, batch_size=8)))
    loop_loss, loop_metrics = model.compute_loss_and_metrics(batch, training=True)
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    assert float(model.compute_loss(batch)) == pytest.approx(float(loop_loss), rel=1e-6)
    logs = model.train_on_batch(batch, return_dict=True)
    assert logs["loss"] == pytest.approx(float(loop_loss), rel=1e-5)
    for name, value in loop_metrics.items():
        assert logs[name] == pytest.approx(float(value), rel=1e-5), name


def test_fit_takes_datasets_of_model_inputs_and_of_raw_text():
    model = text_tasks.gpt()
    model.compile(optimizer="adam")
    texts = list(text_tasks.lines())[:64]
    batches = model.text_dataset(texts, batch_size=16)
    model.fit(batches, verbose=0)  # dicts pass through
    model.fit(tf.data.Dataset.from_tensor_slices(texts).batch(16), verbose=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_keras_file_round_trip_keeps_weights_config_and_tokenizer(family, tmp_path):
    model = FAMILIES[family][0]()
    x, y = fit_data(family)
    batch = next(iter(model.text_dataset(x, y, batch_size=4)))
    path = str(tmp_path / f"{family}.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.tokenizer.fingerprint() == model.tokenizer.fingerprint()
    assert loaded.task_config() == model.task_config()
    np.testing.assert_allclose(loaded.compute_loss_and_metrics(batch)[0],
                               model.compute_loss_and_metrics(batch)[0], rtol=1e-6)
    # Rebuilt from its saved files alone: raw text in works.
    assert set(loaded.text_dataset(x, y, batch_size=4).element_spec) == set(batch)


def test_compile_refuses_a_loss_and_raw_text_needs_a_tokenizer():
    model = text_tasks.gpt()
    with pytest.raises(KerasLLMError, match="own masked loss"):
        model.compile(optimizer="adam", loss="mse")
    model.tokenizer = None
    model.compile(optimizer="adam")
    with pytest.raises(NoTokenizerError, match="GptCausalLM.fit reads raw text"):
        model.fit(["some text"])
    with pytest.raises(NoTokenizerError, match="from_preset"):
        model.generate("some text")


def test_a_classifier_needs_labels_and_a_translator_targets():
    classifier = text_tasks.classifier()
    classifier.compile(optimizer="adam")
    with pytest.raises(KerasLLMError, match="pass the labels too"):
        classifier.fit(["a text"], verbose=0)
    translator = text_tasks.seq2seq()
    translator.compile(optimizer="adam")
    with pytest.raises(KerasLLMError, match="pass both"):
        translator.fit(["a text"], verbose=0)
    with pytest.raises(KerasLLMError, match="at least one text"):
        text_tasks.gpt().text_dataset([])


FIT_UNDER_MULTI_WORKER = """
import os, json
os.environ["TF_CONFIG"] = json.dumps({"cluster": {"worker": ["127.0.0.1:%d"]},
                                      "task": {"type": "worker", "index": 0}})
import tensorflow as tf
from tests.models import text_tasks
from kerasllm.errors import KerasLLMError
strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    model = text_tasks.gpt()
    model.compile(optimizer="adam")
try:
    model.fit(list(text_tasks.lines())[:8], verbose=0)
except KerasLLMError as error:
    print("ERROR:", error)
"""


def test_fit_under_multi_worker_mirrored_strategy_is_a_clear_error():
    """In a fresh process: the strategy configures collectives process-wide."""
    from tests.ports import free_ports
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    result = subprocess.run([sys.executable, "-c", FIT_UNDER_MULTI_WORKER % free_ports(1)[0]],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert "ERROR: Keras' fit does not work under MultiWorkerMirroredStrategy" in \
        result.stdout, result.stderr[-2000:]
