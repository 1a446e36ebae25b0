"""trainers.finetune_gpt end to end on a tiny pretrained GPT (a preset directory):
instruction tuning with LoRA teaches it a mapping it could not do, the checkpoints
hold the adapters alone, the export merges them and serves what the unmerged model
computes, and bad input stops in one line with nothing saved changed."""
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.data.chat_template import DEFAULT_PLAIN
from kerasllm.models import GptCausalLM
from kerasllm.models.lora import lora_layers
from tests.fresh_process import serve_in_fresh_process
from tests.models import text_tasks
from tests.trainers.trainer_runs import Trainer, export_metadata, restore_exported
from tests.training.test_checkpoints import snapshot

trainer = Trainer("finetune_gpt")
# A made-up mapping from one word to a two-word answer, nothing a language model of
# random word lines could guess.
MAPPING = {"king": "dog cat", "queen": "far land", "castle": "away lived",
           "dog": "queen king", "cat": "castle with", "land": "their dog"}
TINY = ["--max_seq_length=32", "--max_new_tokens=6", "--batch_size=6", "--log_every=20",
        "--learning_rate=1e-2", "--warmup_steps=10", "--lora_dropout=0"]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny GPT with a SentencePiece tokenizer (no chat tokens: the plain default
    template) saved as a preset directory."""
    path = str(tmp_path_factory.mktemp("base") / "preset")
    text_tasks.gpt().save_to_preset(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    tsv = directory / "pairs.tsv"
    tsv.write_text("prompt\tresponse\n" + "".join(f"{k}\t{v}\n" for k, v in MAPPING.items()))
    jsonl = directory / "held_out.jsonl"
    jsonl.write_text("".join(
        f'{{"messages": [{{"role": "user", "content": "{k}"}}, '
        f'{{"role": "assistant", "content": "{v}"}}]}}\n' for k, v in MAPPING.items()))
    return str(tsv), str(jsonl)


@pytest.fixture(scope="module")
def tuned(base, data, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    args = [*TINY, f"--init_checkpoint={base}", f"--train_file={data[0]}",
            f"--eval_file={data[1]}", "--lora_rank=8", "--lora_targets=all",
            f"--model_dir={run / 'model'}", f"--export_dir={run / 'export'}",
            "--checkpoint_every=60"]
    before = snapshot(base)
    log = trainer.run(*args, "--train_steps=120")
    assert snapshot(base) == before
    return str(run / "model"), str(run / "export" / "1"), log, args


def test_instruction_tuning_teaches_a_mapping_the_base_could_not_do(base, tuned, tmp_path):
    _, export_path, log, _ = tuned
    assert "6 training examples" in log and "0 truncated" in log
    prompts = list(MAPPING)
    before = GptCausalLM.from_preset(base, chat_template=DEFAULT_PLAIN).chat(
        prompts, max_new_tokens=6)
    assert sum(b.strip() == v for b, v in zip(before, MAPPING.values())) == 0, before
    served = serve_in_fresh_process(export_path, {"message": prompts}, str(tmp_path))
    answers = [text.decode().strip() for text in served["chat/text"]]
    assert answers == list(MAPPING.values())


def test_lora_checkpoints_hold_the_adapters_and_the_export_records_its_start(tuned):
    model_dir, export_path, _, _ = tuned
    names = [name for name, _ in tf.train.list_variables(tf.train.latest_checkpoint(model_dir))
             if name.startswith("task/") and name.endswith("VARIABLE_VALUE")]
    assert names and all("lora" in name for name in names)
    metadata = export_metadata(export_path)
    assert metadata["lora"] == {"rank": 8, "alpha": 16.0, "dropout": 0.0, "targets": "all",
                                "train_norms": False}
    assert len(metadata["base_sha256"]) == 64 and metadata["init_checkpoint"].endswith("preset")
    assert metadata["data"]["examples"] == 6 and "chat" in metadata["signatures"]
    # The held-out loss of the base before training, measured in the same run.
    assert metadata["base_scores"]["loss"] > metadata["best"]["loss"]


def test_the_merged_export_scores_as_the_unmerged_model(base, tuned, tmp_path):
    model_dir, export_path, _, _ = tuned
    unmerged = GptCausalLM.from_preset(base)
    unmerged.enable_lora(8, alpha=16.0, targets="all")
    restore_exported(unmerged, model_dir, export_path)
    assert lora_layers(unmerged)
    texts = ["the king and queen", "User: dog\n\nAssistant: queen king"]
    served = serve_in_fresh_process(export_path, {"text": texts}, str(tmp_path))
    expected = unmerged.score(texts)
    np.testing.assert_allclose(served["score/log_probability"],
                               expected["log_probability"], rtol=1e-4)


def test_a_rerun_with_other_lora_settings_is_refused_and_changes_nothing(tuned):
    model_dir, _, _, args = tuned
    before = snapshot(model_dir)
    message = trainer.error(*[a for a in args if not a.startswith("--lora_rank")],
                            "--lora_rank=4", "--train_steps=130")
    assert "another start" in message and "rank" in message
    assert snapshot(model_dir) == before


def test_continued_pretraining_in_full_lowers_the_held_out_loss(base, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(text_tasks.lines(count=64)))
    log = trainer.run(*TINY, f"--init_checkpoint={base}", f"--corpus={corpus}",
                      "--lora_rank=0", "--eval_fraction=0.2", "--train_steps=20",
                      "--checkpoint_every=10", f"--model_dir={tmp_path / 'model'}",
                      "--noexport")
    losses = [float(line.split("validation: loss ")[1].split()[0])
              for line in log.splitlines() if "validation: loss " in line]
    assert len(losses) == 2 and losses[1] < losses[0], log[-2000:]
    assert os.path.exists(tmp_path / "model" / "config.json")


@pytest.mark.parametrize("flag, fragment", [
    ("--lora_rank=100000", "larger than"),
    ("--lora_targets=q_proj", "name no layer"),
])
def test_lora_settings_that_fit_no_layer_are_one_line_errors(base, data, tmp_path, flag,
                                                              fragment):
    message = trainer.error(*TINY, f"--init_checkpoint={base}", f"--train_file={data[0]}",
                            flag, f"--model_dir={tmp_path}", "--train_steps=20")
    assert fragment in message


def test_bad_data_and_starts_are_named(base, data, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "king", "response": "dog"}\n{"prompt": "x"\n')
    message = trainer.error(*TINY, f"--init_checkpoint={base}", f"--train_file={bad}",
                            f"--model_dir={tmp_path / 'a'}")
    assert message.startswith(f"{bad}:2:")
    assert "one of --train_file" in trainer.error(
        *TINY, f"--init_checkpoint={base}", f"--train_file={data[0]}", "--corpus=x.txt")
    bert = str(tmp_path / "bert")
    text_tasks.classifier().save_to_preset(bert)
    assert "bert model" in trainer.error(*TINY, f"--init_checkpoint={bert}",
                                         f"--train_file={data[0]}",
                                         f"--model_dir={tmp_path / 'b'}")


def test_a_bfloat16_base_with_remat_trains_and_exports_float32_weights(base, data, tmp_path):
    trainer.run(*[a for a in TINY if not a.startswith("--lora_dropout")], "--lora_dropout=0",
                f"--init_checkpoint={base}", f"--train_file={data[0]}", "--lora_rank=4",
                "--mixed_precision=mixed_bfloat16", "--remat", "--train_steps=4",
                "--warmup_steps=0", "--checkpoint_every=4", f"--model_dir={tmp_path / 'm'}",
                f"--export_dir={tmp_path / 'e'}")
    reader = tf.train.load_checkpoint(str(tmp_path / "e" / "1" / "variables" / "variables"))
    dtypes = set(reader.get_variable_to_dtype_map().values())
    assert tf.float32 in dtypes and tf.bfloat16 not in dtypes
    assert "--remat reruns each block" in trainer.error(
        *TINY, f"--init_checkpoint={base}", f"--train_file={data[0]}", "--remat",
        "--lora_dropout=0.1", f"--model_dir={tmp_path / 'n'}")
