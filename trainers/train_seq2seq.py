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

--init_checkpoint continues a trained translator (a train_seq2seq --model_dir or
a Seq2SeqLM.save_to_preset directory) on new pairs: its config, its
SentencePiece vocabulary (never a new one: pairs the vocabulary does not cover
are refused, see check_vocabulary_covers) and every weight; the optimizer and
the step start afresh in a --model_dir of the new run's own (default
model_dirs/<checkpoint>_<data>), which a rerun resumes.

    python -m trainers.train_seq2seq --init_checkpoint=model_dirs/seq2seq_small \
        --train_source=psalms.en --train_target=psalms.es --train_steps=500

With --lora_rank > 0 (and --lora_alpha, --lora_dropout, --lora_targets,
--lora_train_norms, as for finetune_gpt) the continued run trains LoRA adapters
(kerasllm.models.lora; "attention" = query, key, value and output of the self-
and cross-attention) while the checkpoint's weights stay frozen. Its --model_dir
then holds the adapters alone (no config.json: it is no model to load); a rerun
loads the --init_checkpoint again (the same: its fingerprint and the adapter
settings are recorded there) and resumes. The export merges the adapters into
the weights, so the served graph is the plain model's; its metadata records the
base, its fingerprint and the adapter settings.
"""
import collections
import dataclasses
import json
import os
import re

import tensorflow as tf
from absl import flags, logging

from kerasllm.atomic_files import write_atomically
from kerasllm.data.parallel_text import (parallel_dataset, parallel_dataset_fn,
                                         read_parallel_files, read_parallel_tsv)
from kerasllm.datasets import bible_parallel
from kerasllm.errors import CheckpointError, DataError
from kerasllm.evaluation.language_model import HeldOutLoss
from kerasllm.evaluation.translation import (TranslationEvaluator, corpus_quality,
                                             translation_quality)
from kerasllm.evaluation.validation import Validation, merged
from kerasllm.models import registry
from kerasllm.models.seq2seq import Seq2SeqLM, Seq2SeqTransformer
from kerasllm.pretrained import PACKAGED, pretrained_name
from kerasllm.pretrained.model_dir import (CONFIG_FILE, check_model_dir, describe_model_dir,
                                           is_model_dir)
from kerasllm.pretrained.presets import PresetError
from kerasllm.training.checkpoints import checkpointed_step, ensure_writable
from kerasllm.training.loop import train
from kerasllm.training.seeding import set_global_seed
from kerasllm.training.strategy import create_strategy, is_chief
from trainers import common, shared_flags

FAMILY = "seq2seq"
# What describes a new model; a run continuing an --init_checkpoint takes all of it
# from the checkpoint, so these are refused with it rather than quietly ignored.
NEW_MODEL_FLAGS = ("model", "model_settings", "vocab_size", "tokenizer_file")
CONTINUES = ("train_seq2seq --init_checkpoint continues a seq2seq model: pass a "
             "train_seq2seq --model_dir or a Seq2SeqLM.save_to_preset directory")
# Where a continued run's model_dir records the checkpoint it started from.
INIT_RECORD = "init_checkpoint.json"
# The adapter settings that do nothing without --lora_rank > 0, so are refused then.
LORA_SETTING_FLAGS = ("lora_alpha", "lora_dropout", "lora_targets", "lora_train_norms")
# With byte fallback a character the vocabulary lacks is spelled as UTF-8 byte
# pieces (as <unk> without it), which the checkpoint has barely or never trained
# on. In text of its own languages few words hold one: 0.3% of the held-out
# English and 0.3-0.6% of the Spanish verses' words against 8000- and 2000-piece
# vocabularies learned from the training verses (rare capitals and brackets,
# names such as "Achân"). A language of the same script with letters of its own
# puts more past it (Genesis 1:1-10 in German 3.5-10%, in French 13-14%), and
# another script nearly every word. Above 1% of a side's running words the data
# needs another vocabulary.
MAX_UNKNOWN_WORD_SHARE = 0.01
_BYTE_PIECE = re.compile(rb"<0x[0-9A-F]{2}>")


def define_flags(fv):
    flags.DEFINE_string(
        "init_checkpoint", None,
        "Continue a trained translator on new pairs: the --model_dir of a train_seq2seq "
        "run or a Seq2SeqLM.save_to_preset directory. Its config, SentencePiece "
        "vocabulary and every weight are kept (pairs the vocabulary does not cover are "
        "refused); the optimizer and the step start afresh in a new --model_dir "
        "(default model_dirs/<checkpoint>_<data>, never the checkpoint's own). "
        "--model, --model_settings, --vocab_size and --tokenizer_file describe a new "
        "model and are an error with it. Default: train from scratch.", flag_values=fv)
    # Rank 0 by default, unlike finetune_gpt's 8: a translator continued on new pairs
    # is small enough to train in full unless adapters are asked for.
    shared_flags.define_lora_flags(fv, default_rank=0)
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
                        "learned from both sides of the training pairs on the first run. "
                        "Not with --init_checkpoint (its vocabulary is kept).",
                        flag_values=fv)
    flags.DEFINE_integer("vocab_size", None,
                         "Size of the joint vocabulary learned from the training pairs. "
                         "Default: the model's. Not with --init_checkpoint.", lower_bound=300,
                         flag_values=fv)
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
    shared_flags.define_export_flags(fv, "<model>, or <checkpoint>_<data> with "
                                         "--init_checkpoint")
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


def data_name(fv):
    """The training data's name in a continued run's directory names."""
    path = fv.train_tsv or fv.train_source
    return os.path.splitext(os.path.basename(path))[0] if path else "bible"


def side_names(fv):
    """How the messages name the source and the target side of the training pairs."""
    if fv.train_tsv:
        return tuple(f"the {side} column of --train_tsv={fv.train_tsv}"
                     for side in ("source", "target"))
    if fv.train_source:
        return f"--train_source={fv.train_source}", f"--train_target={fv.train_target}"
    return "the default task's English side", "its Spanish side"


@dataclasses.dataclass(frozen=True)
class InitCheckpoint:
    """The trained translator a run continues: its config, every weight of its
    Seq2SeqLM (encoder, decoder, embeddings, output projection), its tokenizer, and
    the step it was trained to (None for a preset directory, which keeps none)."""

    path: str
    config: object
    weights: list
    tokenizer: object
    step: object

    def record(self):
        """What a continued run's model_dir and export record of where it started."""
        return {"path": os.path.abspath(self.path), "step": self.step}


def check_init_flags(fv):
    """Refuses the flags that describe a new model next to --init_checkpoint."""
    for name in NEW_MODEL_FLAGS:
        if fv[name].present:
            raise DataError(f"--{name} does not go with --init_checkpoint: a continued run "
                            f"keeps the checkpoint's config and vocabulary; drop --{name}, "
                            "or drop --init_checkpoint to train a new model")


def check_lora_flags(fv):
    """Refuses LoRA flags that could not act: adapters without a trained translator
    to sit on, and adapter settings without adapters."""
    if fv.lora_rank and not fv.init_checkpoint:
        raise DataError(f"--lora_rank={fv.lora_rank} needs --init_checkpoint: LoRA adapters "
                        "train on a trained translator's frozen weights; pass one, or drop "
                        "--lora_rank to train a new model in full")
    given = [name for name in LORA_SETTING_FLAGS if fv[name].present]
    if given and not fv.lora_rank:
        raise DataError(f"--{given[0]} goes with --lora_rank > 0 (and --init_checkpoint): "
                        "without adapters it would change nothing; add --lora_rank or drop "
                        f"--{given[0]}")


def check_init_checkpoint(source, model_dir):
    """Refuses, before any slow work, an --init_checkpoint that shows cheaply (by its
    name or config.json) that it is no trained seq2seq model, and a --model_dir that
    is the checkpoint itself: training there would resume it (its optimizer, its
    step, its directory written to) instead of continuing it."""
    if source in PACKAGED:
        raise PresetError(f"--init_checkpoint={source} is a {PACKAGED[source][0]} model; "
                          f"{CONTINUES}")
    if not os.path.exists(source) and source in registry.model_names():
        family = registry.lookup(source)[0].name
        raise PresetError(f"--init_checkpoint={source} is a registry name: a {family} config "
                          "with random weights and no vocabulary; "
                          + (f"train it from scratch with --model={source}"
                             if family == FAMILY else CONTINUES))
    if os.path.exists(os.path.join(source, common.ADAPTED_FROM)):
        raise PresetError(f"--init_checkpoint={source} is the model_dir of a LoRA run, whose "
                          "checkpoints hold adapters alone; rerun that run to train it "
                          "further, or continue the checkpoint it started from")
    if is_model_dir(source):
        check_model_dir(source, FAMILY, CONTINUES)
    if os.path.realpath(model_dir) == os.path.realpath(source):
        raise CheckpointError(f"--model_dir={model_dir} is the --init_checkpoint itself, "
                              "where training would resume it instead of continuing it; "
                              "pass a new --model_dir (unset: model_dirs/<checkpoint>_<data>)")


def load_init_checkpoint(source, lora=None):
    """The InitCheckpoint of `source` (see Seq2SeqLM.from_preset, which refuses a
    preset of another family). With `lora` (enable_lora's arguments), they are tried
    on its model: a rank or targets that fit none of its layers stop the run with a
    LoraError before anything is written to its model_dir."""
    task = Seq2SeqLM.from_preset(source)
    init = InitCheckpoint(source, task.backbone.config, task.get_weights(), task.tokenizer,
                          checkpointed_step(source) if is_model_dir(source) else None)
    if lora:
        task.enable_lora(**lora)
    return init


def started_from(model_dir, init, chief):
    """The record of the checkpoint the run in model_dir continues: read back when a
    rerun resumes it, else written there now (by the chief). Refuses a model_dir
    holding checkpoints of a run that did not start from `init`: they would be
    resumed in its place."""
    path = os.path.join(model_dir, INIT_RECORD)
    if os.path.exists(path):
        with open(path) as f:
            record = json.load(f)
        if os.path.realpath(record["path"]) != os.path.realpath(init.path):
            raise CheckpointError(f"{model_dir} continues {record['path']}, not "
                                  f"{init.path}; pass a new --model_dir")
        return record
    if tf.train.latest_checkpoint(model_dir):
        raise CheckpointError(f"{model_dir} holds a run that did not start from {init.path}; "
                              "pass a new --model_dir to continue that checkpoint")
    if chief:
        write_atomically(path, json.dumps(init.record(), indent=2, sort_keys=True))
    return init.record()


def check_adapter_run(model_dir, base, lora):
    """Records `base` (the start and the adapter settings) in a new LoRA run's
    model_dir and refuses a rerun from another (see common.check_adapted_from);
    refuses adapters in a model_dir of a run training every weight, and training in
    full in one holding adapters: either would restore checkpoints of the other
    kind."""
    recorded = os.path.exists(os.path.join(model_dir, common.ADAPTED_FROM))
    if lora and not recorded and (os.path.exists(os.path.join(model_dir, CONFIG_FILE))
                                  or tf.train.latest_checkpoint(model_dir)):
        raise CheckpointError(f"{model_dir} holds a run training every weight, not LoRA "
                              "adapters; drop the --lora flags to resume it, or pass a new "
                              "--model_dir")
    if lora or recorded:  # recorded without lora: refused, naming the adapters' settings
        common.check_adapted_from(model_dir, base)


def check_vocabulary_covers(pairs, tokenizer, names, init_path):
    """Raises DataError when more than MAX_UNKNOWN_WORD_SHARE of either side's running
    words hold a character `tokenizer` has no piece for (it spells them as <unk> or
    byte pieces), naming the side, the share, and some of those characters and words."""
    pieces = tokenizer.id_to_token(tf.range(tokenizer.vocab_size)).numpy()
    unknown_piece = tf.constant([i == tokenizer.unk_id or bool(_BYTE_PIECE.fullmatch(p))
                                 for i, p in enumerate(pieces)])

    def unknown(texts):
        """bool per text: it tokenizes to <unk> or a byte piece."""
        ids = tokenizer.tokenize(tf.constant(texts))
        return tf.reduce_any(tf.gather(unknown_piece, ids), axis=1).numpy()

    for lines, name in zip(pairs, names):
        counts = collections.Counter(word for line in lines for word in line.split())
        words = list(counts)
        lacking = [word for word, flag in zip(words, unknown(words) if words else []) if flag]
        share = sum(counts[word] for word in lacking) / max(1, sum(counts.values()))
        if share <= MAX_UNKNOWN_WORD_SHARE:
            continue
        examples = sorted(lacking, key=counts.get, reverse=True)[:5]
        characters = list(dict.fromkeys(c for word in examples for c in word))
        characters = [c for c, flag in zip(characters, unknown(characters)) if flag]
        raise DataError(
            f"{share:.1%} of the words of {name} hold characters the vocabulary of "
            f"--init_checkpoint={init_path} has no piece for (more than the "
            f"{MAX_UNKNOWN_WORD_SHARE:.0%} allowed), e.g. "
            f"{', '.join(map(repr, characters[:8]))} in "
            f"{', '.join(repr(word[:20]) for word in examples)}: the data needs another "
            "vocabulary. Continue on pairs in the checkpoint's languages, or train a new "
            "model on these without --init_checkpoint")


def task_builder(model_config, init, lora=None):
    """train()'s build_task: a fresh Seq2SeqLM, or with `init` one holding all of the
    init checkpoint's weights, set inside the strategy scope train() builds in; with
    `lora`, those frozen under adapters."""
    def build_task():
        task = Seq2SeqLM(Seq2SeqTransformer(model_config))
        if init:
            task.build_for_inputs()
            task.set_weights(init.weights)
        if lora:
            # After the starting weights are in (the adapters add to them) and before
            # train() builds the optimizer over what is trainable.
            task.enable_lora(**lora)
        return task
    return build_task


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
    check_lora_flags(fv)
    lora = shared_flags.lora_settings_from_flags(fv)
    if fv.init_checkpoint:
        check_init_flags(fv)
        name = f"{pretrained_name(fv.init_checkpoint)}_{data_name(fv)}"
    else:
        model_config = shared_flags.model_config_from_flags(fv, FAMILY, "train_seq2seq")
        name = fv.model
    if fv.beam_size > fv.max_beam_size:
        raise DataError(f"--beam_size={fv.beam_size} is more than --max_beam_size="
                        f"{fv.max_beam_size}")
    export_root = common.export_root(fv, name)
    train_config = shared_flags.train_config_from_flags(
        fv, model_dir=fv.model_dir or os.path.join("model_dirs", name))
    model_dir = train_config.model_dir
    if fv.init_checkpoint:
        check_init_checkpoint(fv.init_checkpoint, model_dir)
    common.check_run_dir(model_dir, FAMILY, "train_seq2seq")
    init = load_init_checkpoint(fv.init_checkpoint, lora) if fv.init_checkpoint else None
    if init:
        model_config = init.config
    for flag in ("max_source_length", "max_target_length"):
        if fv[flag].value > model_config.max_sequence_length:
            raise DataError(f"--{flag}={fv[flag].value} is more than "
                            f"{fv.init_checkpoint or fv.model}'s "
                            f"{model_config.max_sequence_length} positions")
    strategy = create_strategy(fv.strategy, tpu=fv.tpu)
    ensure_writable(model_dir)

    pairs = read_pairs(fv)
    set_global_seed(train_config.seed)  # before the tokenizer: see set_global_seed
    if init:
        tokenizer = init.tokenizer
        check_vocabulary_covers(pairs["train"], tokenizer, side_names(fv), init.path)
        init_record = started_from(model_dir, init, is_chief(strategy))
        base = {"init_checkpoint": init_record,
                "base_sha256": common.fingerprint(init.weights), "lora": lora}
        if is_chief(strategy):
            check_adapter_run(model_dir, base, lora)
    else:
        tokenizer = common.sentencepiece_tokenizer(
            fv, model_dir, lambda: [*pairs["train"][0], *pairs["train"][1]],
            fv.vocab_size or model_config.vocab_size, "both sides")
        model_config = model_config.replace(vocab_size=tokenizer.vocab_size)
        base = {"init_checkpoint": None, "base_sha256": None, "lora": None}
    if is_chief(strategy) and not lora:
        # Not under LoRA: its checkpoints hold adapters alone, and config.json would
        # have load_preset read them as a whole model. Its reruns take the config and
        # the vocabulary from --init_checkpoint again.
        describe_model_dir(model_dir, FAMILY, model_config, tokenizer)
    logging.info("%d training pairs; %s held out", len(pairs["train"][0]),
                 len(pairs["validation"][0]) if pairs["validation"] else "none")
    data_settings = {"max_source_length": fv.max_source_length,
                     "max_target_length": fv.max_target_length,
                     "bos_id": tokenizer.bos_id, "eos_id": tokenizer.eos_id}
    validation = (validation_of(pairs["validation"], tokenizer, fv,
                                model_dir if is_chief(strategy) else None, data_settings)
                  if pairs["validation"] else None)

    result = train(task_builder(model_config, init, lora), parallel_dataset_fn(
        *pairs["train"], tokenizer, global_batch_size=train_config.micro_batch_size,
        seed=train_config.seed, **data_settings), train_config, strategy,
        on_evaluate=validation)
    common.log_finished(result)
    if not common.export_wanted(fv, result, strategy):
        return
    run_metadata = common.prepare_export(validation, result)
    result.task.merge_lora()  # the served graph is the plain model's
    common.quantize_for_export(fv, result.task)  # the test pairs score what is served
    signatures = export_signatures(result.task, tokenizer, fv)
    test = quality_on_test_pairs(signatures["translate_with_options"], pairs["test"], fv)
    common.export(
        fv, export_root, signatures, [result.task, tokenizer],
        {"family": FAMILY, "model": None if init else fv.model, **base,
         "config": model_config.to_dict(),
         "tokenizer": tokenizer.settings(), "max_source_length": fv.max_source_length,
         "max_target_length": fv.max_target_length,
         "defaults": {"beam_size": fv.beam_size, "length_penalty": fv.length_penalty,
                      "max_beam_size": fv.max_beam_size},
         **run_metadata, "test": test},
        **result.task.export_options())


if __name__ == "__main__":
    common.main("train_seq2seq", define_flags, run)
