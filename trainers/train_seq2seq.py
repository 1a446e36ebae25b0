"""Trains an encoder-decoder Transformer on parallel text and exports translation.

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
best BLEU are kept in <model_dir>/best and are what gets exported. The export's
signatures take a sentence and return its translation, beam search inside the
graph, with beam size, length penalty and length limit per sentence (see
kerasllm.export.seq2seq_signatures).
"""
import math
import os

import tensorflow as tf
from absl import flags, logging

from kerasllm.data.parallel_text import (parallel_dataset, parallel_dataset_fn,
                                         read_parallel_files, read_parallel_tsv)
from kerasllm.datasets import bible_parallel
from kerasllm.errors import DataError
from kerasllm.evaluation.translation import corpus_quality, translation_quality
from kerasllm.export import seq2seq_signatures
from kerasllm.export.gpt_signatures import BATCHING
from kerasllm.models import registry
from kerasllm.models.seq2seq import Seq2SeqLM, Seq2SeqTransformer
from kerasllm.pretrained.model_dir import describe_model_dir
from kerasllm.tokenizers.sentencepiece import (MODEL_FILE, SentencePieceTokenizer,
                                               train_sentencepiece)
from kerasllm.training import flags as training_flags
from kerasllm.training.best_checkpoint import BestCheckpoint
from kerasllm.training.loop import ensure_writable, train
from kerasllm.training.seeding import set_global_seed
from kerasllm.training.strategy import create_strategy, is_chief
from trainers import common

FAMILY = "seq2seq"


def define_flags(fv):
    flags.DEFINE_string("model", "seq2seq_small",
                        f"seq2seq config name: {', '.join(registry.model_names(FAMILY))}.",
                        flag_values=fv)
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
                         "Held-out pairs translated (greedily) for BLEU and chrF at every "
                         "checkpoint; 0 = loss only.", lower_bound=0, flag_values=fv)
    flags.DEFINE_integer("beam_size", 4, "The export's default beam size.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_integer("max_beam_size", 8,
                         "The largest beam a request to the export may ask for.",
                         lower_bound=1, flag_values=fv)
    flags.DEFINE_float("length_penalty", 0.6,
                       "The export's default GNMT length penalty alpha.", lower_bound=0.0,
                       flag_values=fv)
    common.define_export_flags(fv, "<model>")
    training_flags.define_training_flags(
        model_dir=None, train_steps=3000, batch_size=64, learning_rate=1e-3,
        checkpoint_every=500, flag_values=fv)


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


def load_or_learn_tokenizer(fv, train_pairs, model_dir, vocab_size):
    """--tokenizer_file, else the one kept with the checkpoints (so a resumed run keeps
    its token ids), else one learned from both sides of the training pairs."""
    path = fv.tokenizer_file or os.path.join(model_dir, MODEL_FILE)
    if fv.tokenizer_file or os.path.exists(path):
        return SentencePieceTokenizer.from_file(path)
    logging.info("learning a %d-piece SentencePiece vocabulary from both sides", vocab_size)
    sources, targets = train_pairs
    return train_sentencepiece([*sources, *targets], vocab_size=vocab_size)


def export_signatures(model, tokenizer, fv):
    """The translation signatures with the flags' limits and defaults."""
    return seq2seq_signatures.seq2seq_signatures(
        model, tokenizer, max_source_length=fv.max_source_length,
        max_target_length=fv.max_target_length, max_beam_size=fv.max_beam_size,
        beam_size=fv.beam_size, length_penalty_alpha=fv.length_penalty)


class Validation:
    """At each checkpoint: the held-out loss, the BLEU and chrF of greedy translations,
    TensorBoard scalars, and the best weights kept by BLEU (by loss without BLEU)."""

    def __init__(self, models, pairs, tokenizer, fv, model_dir, data_settings):
        self.models, self.tokenizer, self.fv = models, tokenizer, fv
        sources, targets = pairs
        self.batches = parallel_dataset(sources, targets, tokenizer,
                                        batch_size=fv.batch_size, training=False,
                                        **data_settings)
        self.sentences = (sources[:fv.eval_sentences], targets[:fv.eval_sentences])
        self.best = BestCheckpoint(model_dir, "bleu" if fv.eval_sentences else "-loss")
        self.writer = tf.summary.create_file_writer(os.path.join(model_dir, "validation"))
        self.history = []
        self._compiled = {}

    def _functions(self, model):
        if id(model) not in self._compiled:  # traced once per model built
            self._compiled[id(model)] = (
                tf.function(lambda batch: model.compute_loss_and_metrics(batch)[0]),
                export_signatures(model, self.tokenizer, self.fv)["translate_with_options"])
        return self._compiled[id(model)]

    def __call__(self, step, metrics):
        del metrics
        model = self.models[-1]
        loss_of, translate = self._functions(model)
        total = count = 0.0
        for batch in self.batches:
            tokens = float(tf.reduce_sum(batch["target_padding_mask"][:, 1:]))
            total += float(loss_of(batch)) * tokens
            count += tokens
        record = {"step": step, "loss": total / count}
        if self.fv.eval_sentences:
            quality = translation_quality(translate, *self.sentences, beam_size=1)
            record.update(bleu=quality.bleu, chrf=quality.chrf)
        self.history.append(record)
        with self.writer.as_default(step=step):
            for name, value in record.items():
                if name != "step":
                    tf.summary.scalar(name, value)
        kept = self.best.offer(model, step,
                               record["bleu"] if "bleu" in record else -record["loss"])
        logging.info("step %d validation: loss %.3f  perplexity %.1f%s%s", step, record["loss"],
                     math.exp(min(record["loss"], 50.0)),
                     f"  BLEU {record['bleu']:.2f}  chrF {record['chrf']:.2f}"
                     if "bleu" in record else "", "  (best so far)" if kept else "")


def run(fv):
    family, model_config = registry.lookup(fv.model)
    if family.name != FAMILY:
        raise DataError(f"--model={fv.model} is a {family.name} model; train_seq2seq trains "
                        f"{', '.join(registry.model_names(FAMILY))}")
    for name in ("max_source_length", "max_target_length"):
        if fv[name].value > model_config.max_sequence_length:
            raise DataError(f"--{name}={fv[name].value} is more than {fv.model}'s "
                            f"{model_config.max_sequence_length} positions")
    if fv.beam_size > fv.max_beam_size:
        raise DataError(f"--beam_size={fv.beam_size} is more than --max_beam_size="
                        f"{fv.max_beam_size}")
    export_root = common.export_root(fv, fv.model)
    train_config = training_flags.train_config_from_flags(
        fv, model_dir=fv.model_dir or os.path.join("model_dirs", fv.model))
    strategy = create_strategy(fv.strategy, tpu=fv.tpu)
    ensure_writable(train_config.model_dir)

    pairs = read_pairs(fv)
    set_global_seed(train_config.seed)  # before the tokenizer: see set_global_seed
    tokenizer = load_or_learn_tokenizer(fv, pairs["train"], train_config.model_dir,
                                        fv.vocab_size or model_config.vocab_size)
    model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
    if is_chief(strategy):
        describe_model_dir(train_config.model_dir, FAMILY, model_config, tokenizer)
    logging.info("%d training pairs; %s held out", len(pairs["train"][0]),
                 len(pairs["validation"][0]) if pairs["validation"] else "none")
    data_settings = {"max_source_length": fv.max_source_length,
                     "max_target_length": fv.max_target_length,
                     "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}
    models = []
    validation = (Validation(models, pairs["validation"], tokenizer, fv,
                             train_config.model_dir, data_settings)
                  if pairs["validation"] else None)
    if validation and fv.eval_sentences:
        copied = corpus_quality(*validation.sentences)
        logging.info("validation BLEU of copying the source: %.2f  chrF %.2f", copied.bleu,
                     copied.chrf)

    def build_task():
        models.append(Seq2SeqLM(Seq2SeqTransformer(model_config)))
        return models[-1]

    def on_checkpoint(step, metrics):
        if validation and (step % train_config.checkpoint_every == 0
                           or step == train_config.train_steps):
            validation(step, metrics)

    result = train(build_task, parallel_dataset_fn(
        *pairs["train"], tokenizer, global_batch_size=train_config.micro_batch_size,
        seed=train_config.seed, **data_settings), train_config, strategy,
        on_log=on_checkpoint)
    logging.info("finished at step %d: %s", result.step,
                 "  ".join(f"{k} {v:.4f}" for k, v in sorted(result.metrics.items())))
    if not (fv.export and is_chief(strategy)):
        return
    task = result.task
    best = validation.best.restore(task) if validation else None
    if best:
        logging.info("exporting the weights of step %d (best %s %.2f)", best["step"],
                     best["metric"], best["score"])
    signatures = export_signatures(task, tokenizer, fv)
    test = {}
    if pairs["test"]:
        quality = translation_quality(signatures["translate_with_options"], *pairs["test"],
                                      beam_size=fv.beam_size, length_penalty=fv.length_penalty)
        test = {"bleu": quality.bleu, "chrf": quality.chrf, "beam_size": fv.beam_size}
        logging.info("test (beam %d): BLEU %.2f  chrF %.2f", fv.beam_size, quality.bleu,
                     quality.chrf)
    common.export(
        fv, export_root, signatures, [task, tokenizer],
        {"family": FAMILY, "model": fv.model, "config": model_config.to_dict(),
         "tokenizer": tokenizer.settings(), "max_source_length": fv.max_source_length,
         "max_target_length": fv.max_target_length,
         "defaults": {"beam_size": fv.beam_size, "length_penalty": fv.length_penalty,
                      "max_beam_size": fv.max_beam_size},
         "step": result.step, "exported_step": best["step"] if best else result.step,
         "metrics": result.metrics,
         "validation": validation.history if validation else [], "test": test},
        warmup_inputs=seq2seq_signatures.warmup_inputs(), batching=BATCHING)


if __name__ == "__main__":
    common.main("train_seq2seq", define_flags, run)
