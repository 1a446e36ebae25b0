r"""Trains an encoder-decoder Transformer on parallel text and exports translation.

    python -m trainers.train_seq2seq              # seq2seq_small, English -> Spanish Bible
    python -m trainers.train_seq2seq --train_source=train.en --train_target=train.es \
        --eval_source=dev.en --eval_target=dev.es --model=transformer_base \
        --strategy=mirrored --train_steps=100000 --batch_size=256

The default task pairs the King James Bible with the Spanish Reina-Valera 1909,
verse by verse, from Debian's sword-text-kjv and sword-text-sparv packages (fetched
once with apt-get); whole books are held out for validation and test. Your own
data is two aligned files (--train_source/--train_target, one sentence per line)
or a TSV with source and target columns (--train_tsv).

The first run learns one SentencePiece vocabulary from both sides (or reads
--tokenizer_file) and keeps it in --model_dir with the config and checkpoints; a
rerun resumes. At every checkpoint the held-out loss and the corpus BLEU and chrF
of greedy translations of the first --eval_sentences held-out pairs are reported
(and written to TensorBoard under <model_dir>/validation); the weights with the
best BLEU are kept in <model_dir>/best and are what gets exported. With
--test_sentences, that many test pairs are translated by the export's beam search
(the default task's test books) before it is written. The export's signatures
take a sentence and return its translation, beam search inside the graph, with
beam size, length penalty and length limit per sentence (see
kerasllm.export.seq2seq_signatures).
"""
import os

from absl import flags, logging

from kerasllm.data.parallel_text import (parallel_dataset, parallel_dataset_fn,
                                         read_parallel_files, read_parallel_tsv)
from kerasllm.datasets import bible_parallel
from kerasllm.errors import DataError
from kerasllm.evaluation.language_model import HeldOutLoss
from kerasllm.evaluation.translation import (TranslationEvaluator, corpus_quality,
                                             translation_quality)
from kerasllm.evaluation.validation import Validation, merged
from kerasllm.models.seq2seq import Seq2SeqLM, Seq2SeqTransformer
from kerasllm.pretrained.model_dir import describe_model_dir
from kerasllm.training.checkpoints import ensure_writable
from kerasllm.training.loop import train
from kerasllm.training.seeding import set_global_seed
from kerasllm.training.strategy import create_strategy, is_chief
from trainers import common, shared_flags

FAMILY = "seq2seq"


def define_flags(fv):
    shared_flags.define_model_flags(fv, FAMILY, "seq2seq_small")
    for side, language in (("source", "the source language"), ("target", "its translation")):
        flags.DEFINE_string(f"train_{side}", None,
                            f"Plain-text file of training sentences in {language}, one per "
                            "line, aligned line by line with the other side. Default: the "
                            "KJV -> Reina-Valera 1909 verse pairs.", flag_values=fv)
        flags.DEFINE_string(f"eval_{side}", None,
                            f"Held-out sentences in {language} (aligned as above). Default: "
                            "the default task's validation books.", flag_values=fv)
    flags.DEFINE_string("train_tsv", None,
                        "Instead of --train_source/--train_target: a TSV file whose header "
                        "names a `source` and a `target` column.", flag_values=fv)
    flags.DEFINE_string("tokenizer_file", None,
                        "SentencePiece .model to use. Default: <model_dir>/sentencepiece.model, "
                        "learned from both sides of the training pairs on the first run.",
                        flag_values=fv)
    flags.DEFINE_integer("vocab_size", None,
                         "Size of the joint vocabulary learned from the training pairs. "
                         "Default: the model's.", lower_bound=300, flag_values=fv)
    flags.DEFINE_integer("max_source_length", 128,
                         "Source tokens (</s> included); longer sentences are cut.",
                         lower_bound=2, flag_values=fv)
    flags.DEFINE_integer("max_target_length", 128,
                         "Target tokens (<s> and </s> included), in training and the most "
                         "the export generates.", lower_bound=3, flag_values=fv)
    flags.DEFINE_integer("eval_sentences", 400,
                         "Held-out pairs translated greedily for BLEU and chrF at every "
                         "checkpoint (each stopping at half again its reference's length); "
                         "0 = the held-out loss alone.", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("test_sentences", 0,
                         "Test pairs (the default task's test books) translated by the "
                         "export's beam search for its BLEU and chrF before it is written; "
                         "0 = none.", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("eval_batch_size", 64,
                         "Pairs per batch of the held-out loss and of every translation "
                         "for BLEU.", lower_bound=1, flag_values=fv)
    flags.DEFINE_integer("beam_size", 4, "The export's default beam size.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("max_beam_size", 8,
                         "The largest beam a request to the export may ask for.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_float("length_penalty", 0.6,
                       "The export's default GNMT length penalty alpha.", lower_bound=0.0,
                       flag_values=fv)
    shared_flags.define_export_flags(fv, "<model>")
    shared_flags.define_training_flags(fv, model_dir=None, train_steps=3000, batch_size=64,
                                       learning_rate=1e-3, checkpoint_every=500)


def read_pairs(fv):
    """{"train": (sources, targets), "validation": ..., "test": ... or None}."""
    if fv.train_tsv and (fv.train_source or fv.train_target):
        raise DataError("pass --train_tsv or --train_source/--train_target, not both")
    if bool(fv.train_source) != bool(fv.train_target):
        raise DataError("--train_source and --train_target go together")
    if bool(fv.eval_source) != bool(fv.eval_target):
        raise DataError("--eval_source and --eval_target go together")
    if fv.train_tsv or fv.train_source:
        train_pairs = (read_parallel_tsv(fv.train_tsv) if fv.train_tsv
                       else read_parallel_files(fv.train_source, fv.train_target))
        validation = (read_parallel_files(fv.eval_source, fv.eval_target)
                      if fv.eval_source else None)
        return {"train": train_pairs, "validation": validation, "test": None}
    pairs = bible_parallel.splits()
    if fv.eval_source:
        pairs["validation"] = read_parallel_files(fv.eval_source, fv.eval_target)
    return pairs


def export_signatures(model, tokenizer, fv):
    """The translation signatures with the flags' limits and defaults: the task's own
    (what its Python translate() runs)."""
    model.tokenizer = tokenizer
    model.max_source_length, model.max_target_length = (fv.max_source_length,
                                                        fv.max_target_length)
    return model.serving_signatures(max_beam_size=fv.max_beam_size, beam_size=fv.beam_size,
                                    length_penalty_alpha=fv.length_penalty)


def validation_of(pairs, tokenizer, fv, model_dir, data_settings):
    """The held-out loss over every pair, and BLEU and chrF of the first
    --eval_sentences; the best weights kept by BLEU (by loss without BLEU)."""
    sources, targets = pairs
    loss = HeldOutLoss(parallel_dataset(sources, targets, tokenizer,
                                        batch_size=fv.eval_batch_size, training=False,
                                        **data_settings), "target_padding_mask")
    if not fv.eval_sentences:
        return Validation(loss, "loss", model_dir, larger_is_better=False)
    sentences = (sources[:fv.eval_sentences], targets[:fv.eval_sentences])
    copied = corpus_quality(*sentences)
    logging.info("validation BLEU of copying the source: %.2f  chrF %.2f", copied.bleu,
                 copied.chrf)
    bleu = TranslationEvaluator(*sentences, tokenizer, max_source_length=fv.max_source_length,
                                max_target_length=fv.max_target_length,
                                batch_size=fv.eval_batch_size)
    return Validation(merged(loss, bleu), "bleu", model_dir)


def quality_on_test_pairs(translate_with_options, test_pairs, fv):
    """{"bleu", "chrf", "beam_size", "sentences"} of the export's defaults on the first
    --test_sentences test pairs ({} without)."""
    if not fv.test_sentences:
        return {}
    if not test_pairs:
        logging.warning("--test_sentences=%d: this task has no test pairs", fv.test_sentences)
        return {}
    sources, targets = (side[:fv.test_sentences] for side in test_pairs)
    logging.info("translating %d test sentences with beam %d", len(sources), fv.beam_size)
    quality = translation_quality(translate_with_options, sources, targets,
                                  beam_size=fv.beam_size, length_penalty=fv.length_penalty,
                                  batch_size=fv.eval_batch_size)
    logging.info("test (beam %d): BLEU %.2f  chrF %.2f", fv.beam_size, quality.bleu,
                 quality.chrf)
    return {"bleu": quality.bleu, "chrf": quality.chrf, "beam_size": fv.beam_size,
            "sentences": len(sources)}


def run(fv):
    model_config = shared_flags.model_config_from_flags(fv, FAMILY, "train_seq2seq")
    for name in ("max_source_length", "max_target_length"):
        if fv[name].value > model_config.max_sequence_length:
            raise DataError(f"--{name}={fv[name].value} is more than {fv.model}'s "
                            f"{model_config.max_sequence_length} positions")
    if fv.beam_size > fv.max_beam_size:
        raise DataError(f"--beam_size={fv.beam_size} is more than --max_beam_size="
                        f"{fv.max_beam_size}")
    export_root = common.export_root(fv, fv.model)
    train_config = shared_flags.train_config_from_flags(
        fv, model_dir=fv.model_dir or os.path.join("model_dirs", fv.model))
    model_dir = train_config.model_dir
    common.check_run_dir(model_dir, FAMILY, "train_seq2seq")
    strategy = create_strategy(fv.strategy, tpu=fv.tpu)
    ensure_writable(model_dir)

    pairs = read_pairs(fv)
    set_global_seed(train_config.seed)  # before the tokenizer: see set_global_seed
    tokenizer = common.sentencepiece_tokenizer(
        fv, model_dir, lambda: [*pairs["train"][0], *pairs["train"][1]],
        fv.vocab_size or model_config.vocab_size, "both sides")
    model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
    if is_chief(strategy):
        describe_model_dir(model_dir, FAMILY, model_config, tokenizer)
    logging.info("%d training pairs; %s held out", len(pairs["train"][0]),
                 len(pairs["validation"][0]) if pairs["validation"] else "none")
    data_settings = {"max_source_length": fv.max_source_length,
                     "max_target_length": fv.max_target_length,
                     "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}
    validation = (validation_of(pairs["validation"], tokenizer, fv,
                                model_dir if is_chief(strategy) else None, data_settings)
                  if pairs["validation"] else None)

    result = train(lambda: Seq2SeqLM(Seq2SeqTransformer(model_config)), parallel_dataset_fn(
        *pairs["train"], tokenizer, global_batch_size=train_config.micro_batch_size,
        seed=train_config.seed, **data_settings), train_config, strategy,
        on_evaluate=validation)
    common.log_finished(result)
    if not common.export_wanted(fv, result, strategy):
        return
    run_metadata = common.prepare_export(validation, result)
    signatures = export_signatures(result.task, tokenizer, fv)
    test = quality_on_test_pairs(signatures["translate_with_options"], pairs["test"], fv)
    common.export(
        fv, export_root, signatures, [result.task, tokenizer],
        {"family": FAMILY, "model": fv.model, "config": model_config.to_dict(),
         "tokenizer": tokenizer.settings(), "max_source_length": fv.max_source_length,
         "max_target_length": fv.max_target_length,
         "defaults": {"beam_size": fv.beam_size, "length_penalty": fv.length_penalty,
                      "max_beam_size": fv.max_beam_size},
         **run_metadata, "test": test},
        **result.task.export_options())


if __name__ == "__main__":
    common.main("train_seq2seq", define_flags, run)
