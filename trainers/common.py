"""What every trainer shares: its entry point (one line for bad input, quiet
TensorFlow, every flag of the trainer under --help), the checks before slow work,
the SentencePiece vocabulary, and the end of a run (best weights, the export and
when a rerun makes one).

A trainer module defines `define_flags(flag_values)` (see shared_flags) and
`run(flag_values)` and ends with `main("<name>", define_flags, run)`; tests define
the same flags on a fresh `absl.flags.FlagValues` and call `run` in-process.
"""
import hashlib
import json
import logging as python_logging
import os
import sys

import keras
import numpy as np
import tensorflow as tf
from absl import flags
from absl import logging as absl_logging

import kerasllm
from kerasllm.data import corpus
from kerasllm.datasets import shakespeare
from kerasllm.atomic_files import write_atomically
from kerasllm.command_line import run_command
from kerasllm.errors import CheckpointError, DataError
from kerasllm.export.errors import ExportError
from kerasllm.export.saved_model import export_saved_model
from kerasllm.export.versioned import existing_versions
from kerasllm.models import quantization
from kerasllm.pretrained.model_dir import check_model_dir
from kerasllm.serving.batching import Batching
from kerasllm.tokenizers.base import Tokenizer
from kerasllm.tokenizers.sentencepiece import (MODEL_FILE, SentencePieceTokenizer,
                                               train_sentencepiece)
from kerasllm.training.loop import TrainPoint
from kerasllm.training.strategy import is_chief
from trainers.shared_flags import EXPORT_ROOT, SHAKESPEARE

# TensorFlow and Keras log their own INFO lines (checkpoint sharding, signature
# renames, fingerprints) through absl, where a trainer's progress lines go too.
_LIBRARY_DIRS = tuple(os.path.dirname(module.__file__) for module in (tf, keras))


class _WithoutLibraryInfo(python_logging.Filter):
    def filter(self, record):
        return record.levelno >= python_logging.WARNING or not os.path.abspath(
            record.pathname).startswith(_LIBRARY_DIRS)


def main(trainer, define_flags, run):
    """Runs `run(flags.FLAGS)` as the program `python -m trainers.<trainer>`.

    Every flag `define_flags` defines is a key flag of the program, so --help lists
    them all (absl lists only the main module's own; --helpfull the rest). A
    kerasllm error (the user's flags, files or model_dir, each named in its
    message) ends the process with the single line `<trainer>: error: <message>`:
    a stack trace would only bury it. TensorFlow's and Keras' own INFO lines are
    left out unless --verbosity asks for them (see trainers/__init__.py for
    TensorFlow's C++ ones).
    """
    before = set(flags.FLAGS)
    define_flags(flags.FLAGS)
    for name in set(flags.FLAGS) - before:
        # absl names the main module after sys.argv[0] (see FlagValues.main_module_help).
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flags.FLAGS[name])

    def quiet_library_logs():
        if flags.FLAGS.verbosity <= 0:
            absl_logging.get_absl_handler().addFilter(_WithoutLibraryInfo())
            python_logging.getLogger("tensorflow").setLevel(python_logging.WARNING)

    run_command(trainer, run, prepare=quiet_library_logs)


def check_run_dir(model_dir, family_name, trainer):
    """Refuses, in one line and before any slow work, a --model_dir holding another
    family's run or a config.json kerasllm did not write."""
    check_model_dir(model_dir, family_name,
                    f"{trainer} trains {family_name} models: pass a new --model_dir, or one "
                    f"of its own runs to resume it")


def read_corpus(fv):
    """The documents of --corpus: its files, or Shakespeare's plays (one document each)."""
    if fv.corpus and fv.corpus != SHAKESPEARE:
        return corpus.read_documents(fv.corpus, fv.document_per_file)
    return corpus.read_documents(shakespeare.default_corpus_files(), document_per_file=True)


def sentencepiece_tokenizer(fv, model_dir, lines, vocab_size, source):
    """--tokenizer_file, else the one kept with the checkpoints (so a resumed run keeps
    its token ids), else one of `vocab_size` pieces learned from `lines()` (called
    only then), which are `source` in the log line."""
    path = fv.tokenizer_file or os.path.join(model_dir, MODEL_FILE)
    if fv.tokenizer_file or os.path.exists(path):
        return SentencePieceTokenizer.from_file(path)
    absl_logging.info("learning a %d-piece SentencePiece vocabulary from %s", vocab_size,
                      source)
    return train_sentencepiece(lines(), vocab_size=vocab_size)


def export_root(fv, default_name):
    """--export_dir, else saved_models/<default_name>; an explicit --export_version
    that exists there already, or a --quantize kerasllm does not export, is refused
    now, before any training."""
    quantization.check_mode(fv.quantize, "--quantize")
    root = fv.export_dir or os.path.join(EXPORT_ROOT, default_name)
    if fv.export_version in existing_versions(root):
        raise ExportError(f"export version {root}/{fv.export_version} already exists; pass "
                          "a new --export_version or leave it unset")
    return root


def sequence_length(fv, config, source):
    """--max_seq_length, which must fit the position table of `config` (from
    `source`); unset, its default shrinks to the table if the table is shorter."""
    if fv.max_seq_length <= config.max_sequence_length:
        return fv.max_seq_length
    if not fv["max_seq_length"].present:
        return config.max_sequence_length
    raise DataError(f"--max_seq_length={fv.max_seq_length} is larger than {source}'s "
                    f"position table ({config.max_sequence_length}); use at most that")


def flags_set(fv):
    """{flag: value} of every flag given on the command line or in a --flagfile."""
    return {name: fv[name].value for name in sorted(fv)
            if fv[name].present and name != "flagfile"}


def log_finished(result):
    absl_logging.info("finished at step %d: %s", result.step, "  ".join(
        f"{k} {v:.4f}" for k, v in sorted(result.metrics.items())))


def export_wanted(fv, result, strategy):
    """True if this process exports: the chief, unless --noexport; a rerun that found
    the run finished (it trained nothing) only with an explicit --export, since TF
    Serving serves the newest version."""
    if not (fv.export and is_chief(strategy)):
        return False
    if result.step > result.start_step or fv["export"].present:
        return True
    absl_logging.info("no new export: the run had already finished at step %d; pass --export "
                      "to write one", result.step)
    return False


def prepare_export(validation, result):
    """Puts the weights to export into result.task: the best validated ones (after
    scoring the task's own if no record has: a rerun with a new held-out set), or
    the last without `validation`. Returns the run's export metadata: steps,
    training metrics and time, validation history, the record of the weights."""
    best = None
    if validation:
        if not any(record["step"] == result.step for record in validation.records):
            validation(TrainPoint(result.step, result.task, result.metrics,
                                  result.train_seconds, result.start_step))
        best = validation.restore_best(result.task)
        absl_logging.info("exporting the weights of step %d (best %s %.4g)", best["step"],
                          validation.metric, best[validation.metric])
    return {"step": result.step, "exported_step": best["step"] if best else result.step,
            "metrics": result.metrics, "train_seconds": round(result.train_seconds, 3),
            "validation": validation.records if validation else [], "best": best}


def quantize_for_export(fv, model):
    """Quantizes `model` in place as --quantize asks (see
    kerasllm.models.quantization); returns it. Call it before building the export's
    signatures: a function traced earlier keeps reading the float kernels, and the
    export would hold those too."""
    if fv.quantize:
        absl_logging.info("quantizing the weights to %s for the export", fv.quantize)
        quantization.quantize(model, fv.quantize)
    return model


def export(fv, root, signatures, resources, metadata, warmup_inputs=None,
           batching=Batching()):
    """Exports `signatures` as the next version under `root` (or --export_version),
    checked as TF Serving loads it; `metadata` goes to assets.extra/kerasllm.json
    with the signature list, the flags set and the versions. Prints and returns
    the path."""
    absl_logging.info("exporting to %s: writing the SavedModel and its warmup requests, "
                      "then checking it in a fresh process as TF Serving loads it", root)
    path = export_saved_model(
        root, signatures, resources, version=fv.export_version, warmup_inputs=warmup_inputs,
        batching=batching,
        metadata={**metadata, "signatures": sorted(signatures), "flags": flags_set(fv),
                  "tokenizer_sha256": next((r.fingerprint() for r in resources
                                            if isinstance(r, Tokenizer)), None),
                  "kerasllm_version": kerasllm.__version__,
                  "tensorflow_version": tf.__version__})
    print(f"exported {path}")
    return path

# What a LoRA run's model_dir records of its start (its checkpoints hold adapters
# alone), checked when it resumes.
ADAPTED_FROM = "adapted_from.json"


def fingerprint(weights):
    """sha256 of a model's weights (numpy arrays, in order): which base a run started from."""
    digest = hashlib.sha256()
    for weight in weights:
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()


def check_adapted_from(model_dir, record):
    """Writes `record` (the base, its fingerprint, the adapter settings) into a new
    LoRA run's model_dir; a rerun must start from the same, else CheckpointError."""
    path = os.path.join(model_dir, ADAPTED_FROM)
    if not os.path.exists(path):
        write_atomically(path, json.dumps(record, indent=1, sort_keys=True))
        return
    with open(path) as f:
        saved = json.load(f)
    changed = [f"{name} {saved.get(name)!r} -> {value!r}" for name, value in record.items()
               if saved.get(name) != value]
    if changed:
        raise CheckpointError(
            f"{model_dir} holds adapters trained from another start ({'; '.join(changed)}); "
            "rerun with the base and LoRA settings that wrote them, or pass a new --model_dir")
