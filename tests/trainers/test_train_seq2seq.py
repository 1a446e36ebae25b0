"""trainers.train_seq2seq end to end on real parallel text (KJV -> Reina-Valera
verses, cut short so that a tiny model learns where a translation ends within
a test's budget): a joint SentencePiece vocabulary, training with held-out loss,
BLEU and chrF, resume, the best weights kept, and an export whose translation
signatures run in a fresh process as TF Serving runs them and agree with the
model in this one."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from kerasllm.datasets.bible_parallel import kjv_to_reina_valera
from kerasllm.export.seq2seq_signatures import seq2seq_signatures
from kerasllm.generation.decode import generate
from kerasllm.generation.prompts import Prompts
from kerasllm.models import Seq2SeqLM
from kerasllm.pretrained.model_dir import load_backbone
from tests.fresh_process import serve_in_fresh_process
from tests.trainers.trainer_runs import (Trainer, export_metadata, restore_exported,
                                        restore_trained)

trainer = Trainer("train_seq2seq")
MAX_SOURCE, MAX_TARGET, MAX_BEAMS = 24, 12, 4
TINY = ["--model=seq2seq_tiny", "--vocab_size=400", f"--max_source_length={MAX_SOURCE}",
        f"--max_target_length={MAX_TARGET}", "--batch_size=16", "--log_every=20",
        "--checkpoint_every=20", "--eval_sentences=24", "--learning_rate=3e-3",
        "--beam_size=2", f"--max_beam_size={MAX_BEAMS}"]
TEXTS = ["And God said, Let there be light", "", "In the beginning God created",
         "And God said, Let there be light"]


def short_pairs(split, count):
    """The first `count` pairs of a split: six English words -> two Spanish ones."""
    sources, targets = kjv_to_reina_valera(split)
    return ([" ".join(s.split()[:6]) for s in sources[:count]],
            [" ".join(t.split()[:2]) for t in targets[:count]])


def write_lines(path, lines):
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    directory = tmp_path_factory.mktemp("corpus")
    files = {}
    for split, count in (("train", 800), ("validation", 48)):
        sources, targets = short_pairs(split, count)
        files[split] = (write_lines(directory / f"{split}.en", sources),
                        write_lines(directory / f"{split}.es", targets))
    return files


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """20 steps, then a rerun asking for 60 (it resumes) that exports."""
    base = tmp_path_factory.mktemp("run")
    args = [*TINY, f"--train_source={corpus['train'][0]}",
            f"--train_target={corpus['train'][1]}", f"--eval_source={corpus['validation'][0]}",
            f"--eval_target={corpus['validation'][1]}", f"--model_dir={base / 'model'}",
            f"--export_dir={base / 'export'}"]
    first = trainer.run(*args, "--train_steps=20", "--noexport")
    second = trainer.run(*args, "--train_steps=60")
    return str(base / "model"), str(base / "export" / "1"), first, second


def local_signatures(model_dir, export_path=None):
    """The export's signatures built in this process from the weights it exported
    (without `export_path`: from the last checkpoint's)."""
    backbone, tokenizer = load_backbone(model_dir)
    model = Seq2SeqLM(backbone).build_for_inputs()
    model = (restore_exported(model, model_dir, export_path) if export_path
             else restore_trained(model, model_dir))
    return model, tokenizer, seq2seq_signatures(
        model, tokenizer, max_source_length=MAX_SOURCE, max_target_length=MAX_TARGET,
        max_beam_size=MAX_BEAMS, beam_size=2)


def test_trains_validates_resumes_and_exports_the_best(trained):
    model_dir, export_path, first, second = trained
    assert "learning a 400-piece SentencePiece vocabulary" in first
    assert "validation BLEU of copying the source" in first
    assert "step 20 validation: loss" in first and "BLEU" in first and "chrF" in first
    assert "resumed from" in second and "step 60/60" in second
    with open(os.path.join(model_dir, "config.json")) as f:
        assert json.load(f)["family"] == "seq2seq"
    metadata = export_metadata(export_path)
    assert metadata["signatures"] == ["score", "serving_default", "translate",
                                     "translate_with_options"]
    assert metadata["defaults"] == {"beam_size": 2, "length_penalty": 0.6,
                                    "max_beam_size": MAX_BEAMS}
    history = metadata["validation"]
    assert [v["step"] for v in history] == [20, 40, 60]
    assert all(v["train_seconds"] > 0 for v in history)
    best = metadata["best"]
    assert metadata["exported_step"] == best["step"]
    assert best["bleu"] == max(v["bleu"] for v in history)
    assert history[-1]["loss"] < 5.0  # from ln(400) = 6.0 at the start
    assert metadata["test"] == {}  # --test_sentences is opt-in


def options(rows, beam_size, length_penalty=0.6):
    return {"beam_size": [beam_size] * rows, "length_penalty": [length_penalty] * rows,
            "max_length": [MAX_TARGET] * rows}


def test_served_translation_equals_the_trained_model(trained, tmp_path):
    model_dir, export_path, *_ = trained
    inputs = {"text": TEXTS, **options(4, 4), "source": TEXTS,
              "target": ["Y dijo", "", "En el", "Y dijo"]}
    served = serve_in_fresh_process(export_path, inputs, str(tmp_path))
    model, tokenizer, local = local_signatures(model_dir, export_path)
    translated = local["translate_with_options"](
        tf.constant(TEXTS), **{k: tf.constant(v) for k, v in options(4, 4).items()})
    assert served["translate_with_options/translations"].tolist() == \
        translated["translations"].numpy().tolist()
    np.testing.assert_allclose(served["translate_with_options/scores"],
                               translated["scores"], rtol=1e-4)
    assert served["serving_default/translation"].tolist() == \
        local["translate"](tf.constant(TEXTS))["translation"].numpy().tolist()
    # Spanish-looking words from English, and "" for an empty source, scored 0.
    words = served["translate_with_options/translation"][0].decode().split()
    assert words and all(word.isalpha() for word in words[:1])
    assert served["translate_with_options/translation"][1] == b""
    assert served["translate_with_options/score"][1] == 0
    assert served["score/num_tokens"].tolist()[1] == 1  # "" is </s> alone
    log_probability = served["score/log_probability"]
    assert log_probability[0] == pytest.approx(log_probability[3], rel=1e-5)
    assert log_probability[0] < 0


def test_one_beam_is_greedy_decoding(trained):
    """Without a length penalty: with one, one beam may rightly prefer a longer
    hypothesis than greedy decoding stops at."""
    model, tokenizer, local = local_signatures(*trained[:2])
    texts = [t for t in TEXTS if t]
    beam = local["translate_with_options"](
        tf.constant(texts),
        **{k: tf.constant(v) for k, v in options(len(texts), 1, length_penalty=0.0).items()})
    ids = [tokenizer.tokenize(tf.constant([t]))[0].numpy().tolist() + [tokenizer.eos_id]
           for t in texts]
    source_ids = tf.ragged.constant(ids).to_tensor(tokenizer.pad_id)
    source_mask = tf.sequence_mask([len(i) for i in ids], source_ids.shape[1], tf.int32)
    context = model.encode_context(source_ids, source_mask)
    rows = len(texts)
    greedy = generate(lambda *args: model.generation_step(*args, context=context),
                      model.init_cache, Prompts(tf.fill([rows, 1], tokenizer.bos_id),
                                                tf.ones([rows], tf.int32)),
                      MAX_TARGET, stop_token_ids=[tokenizer.eos_id], pad_id=tokenizer.pad_id)
    for row in range(rows):
        tokens = greedy.token_ids[row, :greedy.lengths[row]].numpy().tolist()
        tokens = [t for t in tokens if t != tokenizer.eos_id]
        assert tokenizer.detokenize(tf.constant([tokens]))[0].numpy() == \
            beam["translation"][row].numpy()


def test_n_best_is_sorted_and_scored_as_the_score_signature_scores(trained):
    # The weights trained longest: a barely trained model (the best by BLEU may be
    # the first, when no BLEU of two-word targets rises above 0) spells some texts
    # in pieces that tokenizing the text does not give back, which `score` then
    # scores as other tokens.
    model, tokenizer, local = local_signatures(trained[0])
    texts = [t for t in TEXTS if t]
    result = local["translate_with_options"](
        tf.constant(texts), **{k: tf.constant(v) for k, v in options(len(texts), 4).items()})
    scores = result["scores"].numpy()
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    compared = 0
    for row, text in enumerate(texts):
        candidates = [c.decode() for c in result["translations"][row].numpy()]
        scored = local["score"](tf.constant([text] * MAX_BEAMS), tf.constant(candidates))
        alpha_penalty = ((5.0 + scored["num_tokens"].numpy()) / 6.0) ** 0.6
        for beam, candidate in enumerate(candidates):
            ended = scored["num_tokens"][beam] < MAX_TARGET - 1  # </s> fitted
            retokenized = tokenizer.detokenize(tokenizer.tokenize(tf.constant([candidate])))
            if ended and retokenized[0].numpy().decode() == candidate:
                compared += 1
                np.testing.assert_allclose(
                    scored["log_probability"][beam] / alpha_penalty[beam], scores[row, beam],
                    rtol=1e-4, atol=1e-4)
    assert compared >= len(texts)


def test_settings_out_of_range_are_clipped_and_bad_bytes_are_read(trained):
    _, _, local = local_signatures(*trained[:2])
    result = local["translate_with_options"](
        tf.constant([b"And God \xff\xfe said", b"In the beginning", b"Let there be"]),
        tf.constant([0, 99, 2]), tf.constant([0.6, 0.6, 0.6]), tf.constant([5, 1, 0]))
    translations = result["translations"].numpy()
    assert all(isinstance(t.decode("utf-8"), str) for t in translations.ravel())
    # beam_size 0 searches one beam, 99 the exported cap; max_length 1 allows one
    # token, 0 the default length.
    assert np.isfinite(result["scores"][0, 0]) and not np.isfinite(result["scores"][0, 1])
    assert np.isfinite(result["scores"][1]).all()
    assert len(result["translation"][1].numpy().decode().split()) <= 1
    assert np.isfinite(result["scores"][2, :2]).all()


def test_misaligned_files_are_a_named_error(corpus, tmp_path):
    source = write_lines(tmp_path / "a.en", ["one", "two", "three"])
    target = write_lines(tmp_path / "a.es", ["uno", "dos"])
    message = trainer.error(f"--train_source={source}", f"--train_target={target}",
                            f"--model_dir={tmp_path / 'run'}", *TINY)
    assert "has 3 lines but" in message and "has 2" in message


@pytest.mark.parametrize("args, fragment", [
    (["--model=gpt_tiny"], "is a gpt model"),
    (["--train_source=x.en"], "--train_source and --train_target go together"),
    (["--train_tsv=p.tsv", "--train_source=x", "--train_target=y"], "not both"),
    (["--beam_size=8", "--max_beam_size=4"], "--beam_size=8 is more than --max_beam_size=4"),
    (["--max_source_length=4096"], "positions"),
])
def test_bad_flags_are_named(args, fragment, tmp_path):
    assert fragment in trainer.error(*args, f"--model_dir={tmp_path}")
