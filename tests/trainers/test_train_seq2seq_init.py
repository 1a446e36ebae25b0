"""trainers.train_seq2seq --init_checkpoint: a tiny translator trained a few steps
is continued on new pairs, from its --model_dir and from a save_to_preset
directory. A continued run starts from every one of its weights (checked after a
step at a learning rate that leaves them as they were), keeps its vocabulary,
trains in a directory of its own and exports; pairs the vocabulary does not cover,
a model of another family, flags describing a new model and the checkpoint's own
directory as --model_dir are named errors; and the checkpoint is never written to."""
import os

import numpy as np
import pytest

from kerasllm.errors import DataError
from kerasllm.models import Seq2SeqLM
from kerasllm.pretrained.model_dir import load_backbone
from kerasllm.pretrained.presets import load_preset, save_preset
from kerasllm.tokenizers.sentencepiece import MODEL_FILE
from tests.trainers.test_train_seq2seq import TINY, short_pairs, write_lines
from tests.trainers.trainer_runs import Trainer, export_metadata, restore_trained
from tests.training.test_checkpoints import snapshot

trainer = Trainer("train_seq2seq")
# The tiny run's settings that a continued run may repeat: not --model or --vocab_size.
SETTINGS = [arg for arg in TINY if not arg.startswith(("--model=", "--vocab_size="))]
# One step at a learning rate too small to move a weight (it must be above 0): what
# the continued run starts from stays in its checkpoint.
STANDING_STILL = ["--train_steps=1", "--learning_rate=1e-30", "--eval_sentences=0"]
INIT_STEPS = 4


def pair_files(directory, name, pairs):
    return [f"--train_source={write_lines(directory / f'{name}.en', pairs[0])}",
            f"--train_target={write_lines(directory / f'{name}.es', pairs[1])}"]


def files_of(directory):
    """{path under directory: (sha256, mtime)} of every file in it."""
    return {name: (digest, os.stat(os.path.join(directory, name)).st_mtime_ns)
            for name, digest in snapshot(directory).items()}


@pytest.fixture(scope="module")
def init(tmp_path_factory):
    """A tiny translator trained INIT_STEPS steps (its model_dir), the same saved as a
    preset directory, new pairs from later verses, and the files of both."""
    base = tmp_path_factory.mktemp("init")
    model_dir, preset_dir = str(base / "translator"), str(base / "preset")
    trainer.run(*TINY, *pair_files(base, "old", short_pairs("train", 400)),
                f"--model_dir={model_dir}", f"--train_steps={INIT_STEPS}", "--noexport")
    Seq2SeqLM.from_preset(model_dir).save_to_preset(preset_dir)
    sources, targets = short_pairs("train", 600)
    new_pairs = pair_files(base, "new", (sources[400:], targets[400:]))
    return {"model_dir": model_dir, "preset_dir": preset_dir, "new_pairs": new_pairs,
            "files": {d: files_of(d) for d in (model_dir, preset_dir)}}


def continue_from(init, source, tmp_path, *args):
    """Runs a continuation of `source` on the new pairs; returns its model_dir and log."""
    model_dir = str(tmp_path / "continued")
    log = trainer.run(*SETTINGS, *init["new_pairs"], f"--init_checkpoint={source}",
                      f"--model_dir={model_dir}", f"--export_dir={tmp_path / 'export'}",
                      *STANDING_STILL, *args)
    return model_dir, log


def assert_starts_from(init, model_dir):
    """model_dir's checkpoint holds every weight of the init's task, and its vocabulary
    file is the init's, byte for byte."""
    held = Seq2SeqLM.from_preset(init["model_dir"])
    backbone, tokenizer = load_backbone(model_dir)
    continued = restore_trained(Seq2SeqLM(backbone).build_for_inputs(), model_dir)
    assert len(continued.weights) == len(held.weights)
    for mine, theirs in zip(continued.weights, held.weights):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=0, atol=1e-7,
                                   err_msg=mine.path)
    with open(os.path.join(model_dir, MODEL_FILE), "rb") as mine, \
            open(os.path.join(init["model_dir"], MODEL_FILE), "rb") as theirs:
        assert mine.read() == theirs.read()
    assert tokenizer.fingerprint() == held.tokenizer.fingerprint()


def test_continues_a_model_dir_from_all_its_weights_and_exports(init, tmp_path):
    model_dir, log = continue_from(init, init["model_dir"], tmp_path)
    assert "learning a" not in log and "resumed from" not in log
    assert_starts_from(init, model_dir)
    metadata = export_metadata(str(tmp_path / "export" / "1"))
    assert metadata["init_checkpoint"] == {"path": init["model_dir"], "step": INIT_STEPS}
    assert metadata["tokenizer_sha256"] == \
        Seq2SeqLM.from_preset(init["model_dir"]).tokenizer.fingerprint()
    assert metadata["model"] is None and metadata["step"] == 1


def test_continues_a_preset_dir(init, tmp_path):
    model_dir, _ = continue_from(init, init["preset_dir"], tmp_path, "--noexport")
    assert_starts_from(init, model_dir)
    # Where it started is kept with its checkpoints: another checkpoint is refused there.
    message = trainer.error(*SETTINGS, *init["new_pairs"], f"--model_dir={model_dir}",
                            f"--init_checkpoint={init['model_dir']}")
    assert f"{model_dir} continues {init['preset_dir']}, not" in message


def test_data_the_vocabulary_does_not_cover_is_a_named_error(init, tmp_path):
    sources, _ = short_pairs("train", 40)
    russian = ["И сказал Бог: да будет свет", "В начале сотворил Бог небо и землю"] * 20
    target = write_lines(tmp_path / "new.ru", russian)
    with pytest.raises(DataError) as error:
        trainer.run(*SETTINGS, f"--init_checkpoint={init['model_dir']}",
                    f"--train_source={write_lines(tmp_path / 'new.en', sources)}",
                    f"--train_target={target}", f"--model_dir={tmp_path / 'run'}")
    message = str(error.value)
    assert message.startswith(f"100.0% of the words of --train_target={target} hold "
                              "characters the vocabulary of --init_checkpoint=")
    assert "'И'" in message and "'Бог:'" in message
    assert "train a new model on these without --init_checkpoint" in message


@pytest.mark.parametrize("source, fragment", [
    ("minilm", "--init_checkpoint=minilm is a bert model; train_seq2seq --init_checkpoint "
               "continues a seq2seq model"),
    ("smollm2", "--init_checkpoint=smollm2 is a gpt model"),
    ("gpt_tiny", "--init_checkpoint=gpt_tiny is a registry name: a gpt config"),
    ("seq2seq_tiny", "train it from scratch with --model=seq2seq_tiny"),
    ("bert preset", "holds a bert model; Seq2SeqLM needs a seq2seq one"),
])
def test_another_family_is_a_named_error(init, source, fragment, tmp_path):
    if source == "bert preset":
        source = save_preset(load_preset("bert_tiny").backbone, str(tmp_path / "bert"))
    message = trainer.error(*SETTINGS, *init["new_pairs"], f"--init_checkpoint={source}",
                            f"--model_dir={tmp_path / 'run'}")
    assert fragment in message


@pytest.mark.parametrize("which", ["model_dir", "preset_dir"])
def test_the_checkpoint_as_model_dir_is_a_named_error(init, which):
    message = trainer.error(*SETTINGS, *init["new_pairs"], f"--init_checkpoint={init[which]}",
                            f"--model_dir={init[which]}/.")
    assert "is the --init_checkpoint itself" in message


@pytest.mark.parametrize("flag", ["--model=seq2seq_tiny", "--model_settings=dropout=0.2",
                                  "--vocab_size=400", "--tokenizer_file=x.model"])
def test_flags_describing_a_new_model_are_named_errors(init, flag, tmp_path):
    message = trainer.error(*SETTINGS, *init["new_pairs"], flag,
                            f"--init_checkpoint={init['model_dir']}",
                            f"--model_dir={tmp_path / 'run'}")
    name = flag.split("=")[0]
    assert message.startswith(f"{name} does not go with --init_checkpoint")


def test_the_checkpoint_is_left_as_it_was(init):
    """Last in this file: after every run above."""
    for directory, files in init["files"].items():
        assert files_of(directory) == files
