"""trainers.train_gpt end to end: a SentencePiece vocabulary learned from real text,
training with held-out validation, resume, an export of the best weights whose
generation signatures run in a fresh process as TF Serving runs them and agree with
the model in this one, and a rerun of the finished run (a new version only when asked)."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.datasets.shakespeare import default_corpus_files
from kerasllm.export.gpt_signatures import gpt_signatures
from kerasllm.pretrained.model_dir import load_backbone
from kerasllm.models import GptCausalLM
from tests.fresh_process import serve_in_fresh_process
from tests.trainers.trainer_runs import Trainer, export_metadata, restore_exported

trainer = Trainer("train_gpt")
TINY = ["--model=gpt_tiny", "--vocab_size=400", "--max_seq_length=32", "--batch_size=8",
        "--log_every=10", "--checkpoint_every=10", "--max_new_tokens=8",
        "--eval_fraction=0.25", "--document_per_file", "--learning_rate=3e-3"]
PROMPTS = ["To be, or not to be", "", "My lord", "To be, or not to be"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """20 steps, then a rerun asking for 30 (it resumes) that exports."""
    directory = tmp_path_factory.mktemp("corpus")
    for path in default_corpus_files():
        if os.path.basename(path).startswith(("hamlet", "macbeth", "tempest", "othello")):
            with open(path, encoding="utf-8") as src:
                (directory / os.path.basename(path)).write_text(src.read()[:40000])
    base = tmp_path_factory.mktemp("run")
    args = [*TINY, f"--corpus={directory}/*.txt", f"--model_dir={base / 'model'}",
            f"--export_dir={base / 'export'}"]
    first = trainer.run(*args, "--train_steps=20", "--noexport")
    second = trainer.run(*args, "--train_steps=30")
    return str(base / "model"), str(base / "export" / "1"), first, second, args


def test_trains_validates_resumes_and_exports(trained):
    model_dir, export_path, first, second, _ = trained
    assert "learning a 400-piece SentencePiece vocabulary" in first
    assert "step 20/20" in first and "step 20 validation: loss" in first
    assert "resumed from" in second and "step 30/30" in second
    with open(os.path.join(model_dir, "config.json")) as f:
        saved = json.load(f)
    assert saved["family"] == "gpt" and saved["tokenizer"]["kind"] == "sentencepiece"
    metadata = export_metadata(export_path)
    assert metadata["signatures"] == ["describe", "generate", "generate_beam",
                                     "generate_with_logprobs", "generate_with_options",
                                     "score", "serving_default"]
    # The whole run's history, both processes', each with the training time so far.
    history = metadata["validation"]
    assert [v["step"] for v in history] == [10, 20, 30]
    assert 0 < history[0]["train_seconds"] < history[1]["train_seconds"] \
        < history[2]["train_seconds"] == metadata["train_seconds"]
    assert history[-1]["loss"] < history[0]["loss"]
    best = min(history, key=lambda v: v["loss"])
    assert metadata["best"] == best and metadata["exported_step"] == best["step"]
    assert metadata["step"] == 30 and metadata["metrics"]["loss"] > 0
    assert glob.glob(os.path.join(model_dir, "validation", "events.out.tfevents.*"))


def test_a_rerun_of_the_finished_run_exports_only_when_asked(trained):
    model_dir, export_path, _, _, args = trained
    export_dir = os.path.dirname(export_path)
    output = trainer.run(*args, "--train_steps=30")
    assert "already trained to step 30 of 30" in output and "no new export" in output
    assert sorted(os.listdir(export_dir)) == ["1"]
    output = trainer.run(*args, "--train_steps=30", "--export")
    assert f"exported {export_dir}/2" in output
    again, first = export_metadata(os.path.join(export_dir, "2")), export_metadata(export_path)
    for name in ("validation", "best", "exported_step", "metrics", "train_seconds", "step"):
        assert again[name] == first[name], name


def settings(rows):
    return {"max_new_tokens": [8, 2, 8, 8][:rows], "temperature": [0.0, 0.0, 0.9, 0.0][:rows],
            "top_k": [0, 0, 20, 0][:rows], "top_p": [1.0, 1.0, 0.95, 1.0][:rows],
            "seed": [0, 0, 7, 0][:rows], "stop": ["", "", "", ""][:rows],
            "length_penalty": [0.6] * rows}


def test_served_generation_equals_the_trained_model(trained, tmp_path):
    model_dir, export_path, *_ = trained
    served = serve_in_fresh_process(export_path,
                                    {"prompt": PROMPTS, "text": PROMPTS, **settings(4)},
                                    str(tmp_path))
    backbone, tokenizer = load_backbone(model_dir)
    model = restore_exported(GptCausalLM(backbone).build_for_inputs(), model_dir, export_path)
    local = gpt_signatures(model, tokenizer, max_prompt_length=504, max_new_tokens=8)
    greedy = local["serving_default"](tf.constant(PROMPTS))
    np.testing.assert_array_equal(served["serving_default/token_ids"], greedy["token_ids"])
    assert [t.decode() for t in served["serving_default/text"]] == \
        [t.decode() for t in greedy["text"].numpy()]
    # Sampled rows too: the same seed gives the same text in another process.
    options = settings(4)
    del options["length_penalty"]
    sampled = local["generate_with_options"](
        tf.constant(PROMPTS), **{k: tf.constant(v) for k, v in options.items()})
    np.testing.assert_array_equal(served["generate_with_options/token_ids"],
                                  sampled["token_ids"])
    counts = served["generate_with_options/num_tokens"]
    assert counts[1] <= 2 and all(0 <= c <= 8 for c in counts)  # per-row limits
    # Greedy rows 0 and 3 of `generate` are the same prompt: the same text.
    assert served["generate_with_options/text"][0] == served["generate_with_options/text"][3]
    assert served["generate_beam/texts"].shape == (4, 4)
    # score: every token after <s> is scored, so "" scores none; equal texts, equal scores.
    assert served["score/num_tokens"][1] == 0 and served["score/log_probability"][1] == 0
    assert served["score/log_probability"][0] == served["score/log_probability"][3] < 0
    scores = served["generate_beam/scores"]
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # best first
    # Bytes that are not UTF-8 are read as U+FFFD: valid text comes back, no error.
    broken = local["serving_default"](tf.constant([b"My l\xf6rd \xff\xfe", b"My lord"]))
    assert all(isinstance(text.decode("utf-8"), str) for text in broken["text"].numpy())
    assert broken["num_tokens"].numpy()[0] > 0


def test_a_bert_model_is_refused(tmp_path):
    assert "is a bert model" in trainer.error("--model=bert_tiny", f"--model_dir={tmp_path}")


def test_no_room_for_a_prompt_is_one_line_in_a_fresh_process(tmp_path):
    code, output = trainer.run_fresh("--max_new_tokens=512", f"--model_dir={tmp_path}")
    trainer.assert_one_line_error(code, output, "--max_new_tokens=512 leaves no room")


def test_a_run_converts_to_gguf_and_hugging_face(trained, tmp_path):
    model_dir, export_path, *_ = trained
    convert = Trainer("convert")
    model = GptCausalLM.from_preset(model_dir)
    for to, output in (("gguf", tmp_path / "run.gguf"), ("hf", tmp_path / "run_hf")):
        assert f"wrote {output}" in convert.run(f"--input={model_dir}", f"--to={to}",
                                                f"--output={output}")
        written = GptCausalLM.from_preset(str(output))
        for mine, theirs in zip(model.get_weights(), written.get_weights(), strict=True):
            np.testing.assert_array_equal(mine, theirs)
        texts = ["To be, or not to be:  that is\n\tthe question 1601", "naïve ✓"]
        assert (written.tokenizer.tokenize(texts).to_list()
                == model.tokenizer.tokenize(texts).to_list())
    assert convert.error(f"--input={model_dir}", "--to=gguf", f"--output={tmp_path / 'run.gguf'}"
                         ) == f"{tmp_path / 'run.gguf'} exists; pass --overwrite to replace it"
    assert convert.error(f"--input={export_path}", "--to=gguf", "--output=x.gguf").startswith(
        f"{export_path} is a SavedModel export, a serving graph; --to=gguf needs the model "
        "itself")
    assert convert.error(f"--input={model_dir}", "--to=hf") == \
        "--to=hf needs --output=PATH, where to write it"
    assert convert.error(f"--input={model_dir}", "--to=hf", "--dtype=q8_0",
                         f"--output={tmp_path / 'q8'}").startswith(
        "dtype 'q8_0' is not one Hugging Face safetensors holds here; choose f32 or f16")
    assert not os.path.exists(tmp_path / "q8")
