"""What every trainer's command line tells a user: --help lists each flag the trainer
defines (absl's own wait for --helpfull), and a --model_dir or --init_checkpoint of
the wrong family, or of no kind kerasllm knows, is one line naming what it holds and
what the command needs, before any slow work."""
import json
import re

import pytest
import tensorflow as tf
from absl import flags

from kerasllm.models import registry
from kerasllm.pretrained.model_dir import describe_model_dir
from kerasllm.tokenizers import WordPieceTokenizer
from tests.trainers.trainer_runs import Trainer

TRAINERS = ["pretrain_bert", "finetune_bert", "train_gpt", "train_seq2seq",
            "make_pretraining_data", "serving_config"]


@pytest.mark.parametrize("name", TRAINERS)
def test_help_lists_every_flag_of_the_trainer(name):
    trainer = Trainer(name)
    defined = flags.FlagValues()
    trainer.module.define_flags(defined)
    _, output = trainer.run_fresh("--help", timeout=120)
    shown = set(re.findall(r"^  --(?:\[no\])?(\w+):", output, re.MULTILINE))
    assert shown == set(defined), sorted(shown ^ set(defined))
    assert "--helpfull" in output


def test_helpfull_keeps_absls_flags():
    _, output = Trainer("train_gpt").run_fresh("--helpfull", timeout=120)
    assert "--verbosity" in output and "--train_steps" in output


def run_dir(path, family, with_checkpoint=False):
    """A directory as a `family` trainer leaves it: config.json, the tokenizer and,
    when asked, a checkpoint."""
    names = {"bert": "bert_tiny", "gpt": "gpt_tiny", "seq2seq": "seq2seq_tiny"}
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the"]
    describe_model_dir(str(path), family,
                       registry.get(names[family]).replace(vocab_size=len(vocab)),
                       WordPieceTokenizer(vocab))
    if with_checkpoint:
        tf.train.CheckpointManager(tf.train.Checkpoint(step=tf.Variable(1)), str(path), 1,
                                   checkpoint_name="ckpt").save(1)
    return str(path)


@pytest.mark.parametrize("name, family, held, unread", [
    ("pretrain_bert", "bert", "gpt", "--corpus=unread/*.txt"),
    ("train_gpt", "gpt", "bert", "--corpus=unread/*.txt"),
    ("train_seq2seq", "seq2seq", "gpt", "--train_tsv=unread.tsv"),
    ("finetune_bert", "bert", "seq2seq", "--train_file=unread.tsv")])
def test_a_model_dir_of_another_family_is_one_line(name, family, held, unread, tmp_path):
    """Refused before the data (a file that does not exist) is read."""
    model_dir = run_dir(tmp_path / "run", held)
    message = Trainer(name).error(f"--model_dir={model_dir}", unread)
    assert message == (f"{model_dir} holds a kerasllm {held} model; {name} trains {family} "
                       "models: pass a new --model_dir, or one of its own runs to resume it")


def test_a_hugging_face_directory_as_model_dir_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    message = Trainer("train_gpt").error(f"--model_dir={tmp_path}")
    assert message.startswith(f"{tmp_path}/config.json is a Hugging Face gpt2 config, not a "
                              "kerasllm model_dir's; train_gpt trains gpt models")


def test_finetune_from_another_familys_run_is_one_line(tmp_path):
    source = run_dir(tmp_path / "gpt_run", "gpt", with_checkpoint=True)
    message = Trainer("finetune_bert").error(f"--init_checkpoint={source}",
                                             f"--model_dir={tmp_path / 'run'}")
    assert message == (f"{source} holds a kerasllm gpt model; finetune_bert --init_checkpoint "
                       "needs a BERT: a pretrain_bert --model_dir, a Hugging Face BERT "
                       "directory, or minilm")


def test_the_wrong_family_is_one_line_in_a_fresh_process(tmp_path):
    """The user's case: `pretrain_bert --model_dir=<a GPT run>` died with an
    AttributeError after learning a vocabulary."""
    trainer = Trainer("pretrain_bert")
    code, output = trainer.run_fresh(f"--model_dir={run_dir(tmp_path, 'gpt')}", timeout=120)
    trainer.assert_one_line_error(code, output, "holds a kerasllm gpt model",
                                  "pretrain_bert trains bert models")
    assert "learning" not in output
