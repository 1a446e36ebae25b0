"""trainers.train_seq2seq --init_checkpoint: a tiny translator trained a few steps
is continued on new pairs, from its --model_dir and from a save_to_preset
directory. A continued run starts from every one of its weights (checked after a
step at a learning rate that leaves them as they were), keeps its vocabulary,
trains in a directory of its own and exports; pairs the vocabulary does not cover,
a model of another family, flags describing a new model and the checkpoint's own
directory as --model_dir are named errors; and the checkpoint is never written to.
With --lora_rank it trains adapters alone, which its checkpoints hold, and exports
them merged: the export translates and scores as the unmerged model does."""
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.errors import DataError
from kerasllm.models import Seq2SeqLM
from kerasllm.pretrained.model_dir import load_backbone
from kerasllm.pretrained.presets import load_preset, save_preset
from kerasllm.tokenizers.sentencepiece import MODEL_FILE
from kerasllm.training.checkpoints import checkpointed_task
from tests.trainers.test_train_seq2seq import MAX_SOURCE, MAX_TARGET, TINY, short_pairs, \
    write_lines
from tests.trainers.trainer_runs import Trainer, export_metadata, restore_trained
from tests.training.test_checkpoints import snapshot
from trainers import common

trainer = Trainer("train_seq2seq")
# The tiny run's settings that a continued run may repeat: not --model or --vocab_size.
SETTINGS = [arg for arg in TINY if not arg.startswith(("--model=", "--vocab_size="))]
# One step at a learning rate too small to move a weight (it must be above 0): what
# the continued run starts from stays in its checkpoint.
STANDING_STILL = ["--train_steps=1", "--learning_rate=1e-30", "--eval_sentences=0"]
INIT_STEPS = 4
# Adapters on every linear layer; a learning rate that moves them within 3 steps.
LORA = {"rank": 4, "alpha": 8.0, "dropout": 0.05, "targets": "all", "train_norms": False}
LORA_FLAGS = ["--lora_rank=4", "--lora_alpha=8", "--lora_targets=all"]
LORA_STEPS = ["--train_steps=3", "--learning_rate=1e-2", "--eval_sentences=8"]


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


@pytest.fixture(scope="module")
def lora_run(init, tmp_path_factory):
    """A LoRA continuation of the init's model_dir on the new pairs, validated (its
    best adapters kept) and exported: (model_dir, export path, its flags)."""
    base = tmp_path_factory.mktemp("lora")
    sources, targets = short_pairs("validation", 16)
    held_out = [f"--eval_source={write_lines(base / 'held_out.en', sources)}",
                f"--eval_target={write_lines(base / 'held_out.es', targets)}"]
    args = [*SETTINGS, *init["new_pairs"], *held_out, f"--init_checkpoint={init['model_dir']}",
            f"--model_dir={base / 'model'}", *LORA_FLAGS, *LORA_STEPS]
    trainer.run(*args, f"--export_dir={base / 'export'}")
    return str(base / "model"), str(base / "export" / "1"), args


def unmerged_model(init, model_dir, lora=True):
    """The init's translator (at the export's lengths), with the adapters of
    model_dir's newest checkpoint, not merged (lora=False: the init's alone)."""
    model = Seq2SeqLM.from_preset(init["model_dir"])
    model.max_source_length, model.max_target_length = MAX_SOURCE, MAX_TARGET
    if lora:
        model.enable_lora(**LORA)
        tf.train.Checkpoint(task=checkpointed_task(model)).read(
            tf.train.latest_checkpoint(model_dir)).assert_existing_objects_matched()
    return model


def test_lora_checkpoints_hold_the_adapters_and_the_export_records_its_start(init, lora_run):
    model_dir, export_path, _ = lora_run
    names = [name for name, _ in tf.train.list_variables(tf.train.latest_checkpoint(model_dir))
             if name.startswith("task/") and name.endswith("VARIABLE_VALUE")]
    assert names and all("lora" in name for name in names)
    assert any("cross_attention" in name for name in names), names
    # Adapters alone are no model to load: no config.json claims one.
    assert not os.path.exists(os.path.join(model_dir, "config.json"))
    metadata = export_metadata(export_path)
    assert metadata["lora"] == LORA
    assert metadata["base_sha256"] == common.fingerprint(
        Seq2SeqLM.from_preset(init["model_dir"]).get_weights())
    assert metadata["init_checkpoint"] == {"path": init["model_dir"], "step": INIT_STEPS}
    assert metadata["step"] == metadata["exported_step"] == 3
    assert os.listdir(os.path.join(model_dir, "best"))  # the best adapters, kept


def test_the_merged_export_translates_and_scores_as_the_unmerged_model(init, lora_run):
    model_dir, export_path, _ = lora_run
    unmerged = unmerged_model(init, model_dir)
    texts = ["And God said, Let there be light", "In the beginning God created"]
    targets = ["Y dijo", "En el"]
    served = tf.saved_model.load(export_path).signatures
    translated = served["translate_with_options"](
        text=tf.constant(texts), beam_size=tf.constant([1, 1]),
        length_penalty=tf.constant([0.0, 0.0]), max_length=tf.constant([0, 0]))
    greedy = unmerged.translate(texts, beam_size=1, length_penalty=0.0)
    assert all(greedy) and [t.decode() for t in translated["translation"].numpy()] == greedy
    scored = served["score"](source=tf.constant(texts), target=tf.constant(targets))
    expected = unmerged.score(texts, targets)["log_probability"]
    np.testing.assert_allclose(scored["log_probability"], expected, rtol=1e-4)
    # The adapters trained: without them the scores differ.
    base = unmerged_model(init, model_dir, lora=False).score(texts, targets)
    assert np.abs(np.asarray(base["log_probability"]) - expected).max() > 1e-3


def test_a_rerun_from_another_start_is_refused_and_changes_nothing(init, lora_run, tmp_path):
    model_dir, _, args = lora_run
    before = files_of(model_dir)
    without_lora = [arg for arg in args if not arg.startswith("--lora_")]
    message = trainer.error(*without_lora, "--lora_rank=2")
    assert "holds adapters trained from another start" in message and "'rank': 4" in message
    message = trainer.error(*without_lora)
    assert "holds adapters trained from another start" in message and "-> None" in message
    assert files_of(model_dir) == before
    # Its adapters alone are no checkpoint to continue.
    message = trainer.error(*SETTINGS, *init["new_pairs"], f"--init_checkpoint={model_dir}",
                            f"--model_dir={tmp_path / 'run'}")
    assert message.startswith(f"--init_checkpoint={model_dir} is the model_dir of a LoRA run")


def test_adapters_in_the_model_dir_of_a_run_in_full_are_a_named_error(init, tmp_path):
    model_dir, _ = continue_from(init, init["model_dir"], tmp_path, "--noexport")
    message = trainer.error(*SETTINGS, *init["new_pairs"], f"--model_dir={model_dir}",
                            f"--init_checkpoint={init['model_dir']}", "--lora_rank=4")
    assert message == (f"{model_dir} holds a run training every weight, not LoRA adapters; "
                       "drop the --lora flags to resume it, or pass a new --model_dir")


@pytest.mark.parametrize("flags, start", [
    (["--lora_rank=8"], "--lora_rank=8 needs --init_checkpoint: LoRA adapters train on"),
    (["--lora_targets=all", "INIT"], "--lora_targets goes with --lora_rank > 0"),
    (["--lora_rank=8", "--lora_targets=q_proj", "INIT"], "LoRA targets 'q_proj' name no layer"),
    (["--lora_rank=100000", "INIT"], "LoRA rank 100000 is larger than"),
])
def test_lora_flags_that_cannot_act_are_named_errors(init, flags, start, tmp_path):
    flags = [f"--init_checkpoint={init['model_dir']}" if flag == "INIT" else flag
             for flag in flags]
    message = trainer.error(*SETTINGS, *init["new_pairs"], *flags,
                            f"--model_dir={tmp_path / 'run'}")
    assert message.startswith(start), message
    assert not os.path.exists(tmp_path / "run")  # refused before anything is written


def test_the_checkpoint_is_left_as_it_was(init):
    """Last in this file: after every run above."""
    for directory, files in init["files"].items():
        assert files_of(directory) == files
